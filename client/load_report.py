"""What loading one merchant table kept and dropped: counts, reasons, column names, no data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("events", "features")


@dataclass(frozen=True)
class LoadReport:
    """What loading kept and dropped; counts, row numbers and column names only, no data.

    ``dropped`` counts rows per reason (see :mod:`fedseg.client.validation`), in the
    order the rules run; ``first_rows`` gives the first row (from 1) of each reason, to
    find it in the file. ``window`` is the public time window applied (or empty), and
    ``event_aliases`` the accepted event aliases the table used (``"order → purchase"``)."""

    source: str
    kind: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_columns: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    n_users: int = 0
    first_rows: dict[str, int] = field(default_factory=dict)
    window: str = ""
    event_aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.rows_kept + sum(self.dropped.values()) != self.rows_read:
            raise ValueError(
                f"{self.source}: {self.rows_read} rows read but {self.rows_kept} kept "
                f"+ {sum(self.dropped.values())} dropped"
            )

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_kept

    def summary(self) -> str:
        """A few readable lines for the merchant's terminal or log; the first stands alone."""
        lines = [
            f"{self.source}: {self.kind} table, {self.rows_read:,} rows read, "
            f"{self.rows_kept:,} kept, {self.rows_dropped:,} dropped, {self.n_users:,} customers"
        ]
        if self.dropped:
            reasons = ", ".join(self._reason(r, n) for r, n in self.dropped.items())
            lines.append(f"  dropped: {reasons}")
        if self.window:
            lines.append(f"  time window: {self.window}")
        if self.event_aliases:
            lines.append(f"  event names read as: {', '.join(self.event_aliases)}")
        if self.dropped_columns:
            lines.append(f"  identifier columns removed: {', '.join(self.dropped_columns)}")
        if self.ignored_columns:
            lines.append(f"  columns ignored: {', '.join(self.ignored_columns)}")
        if "unknown event" in self.dropped:
            lines.append(
                "  events are view, cart, purchase, review or an alias (docs/merchant.md); "
                "strict mode refuses a table with other names"
            )
        return "\n".join(lines)

    def _reason(self, reason: str, count: int) -> str:
        row = self.first_rows.get(reason)
        return f"{count:,} {reason}" + (f" (first at row {row})" if row else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "kind": self.kind,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "first_rows": dict(self.first_rows),
            "dropped_columns": list(self.dropped_columns),
            "ignored_columns": list(self.ignored_columns),
            "n_users": self.n_users,
            "window": self.window,
            "event_aliases": list(self.event_aliases),
        }
