"""Load a merchant's table: read, drop direct identifiers, validate, pseudonymize.

This is the first step at the client: nothing downstream ever sees an email address or
a clear ``user_id``. Bad rows are dropped and counted per reason in a :class:`LoadReport`
(see :mod:`fedseg.client.validation` for the rules); a table that cannot be used at all
raises one :class:`DataError` line naming the file and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from fedseg.client.errors import DataError
from fedseg.client.schema import (
    EVENT_COLUMNS,
    detect_kind,
    is_direct_identifier,
    normalize_columns,
)
from fedseg.client.tables import read_table, source_label
from fedseg.client.validation import validate_events, validate_features
from fedseg.privacy.pseudonyms import Pseudonymizer

__all__ = ["DataError", "LoadReport", "load_merchant_table", "read_table"]

KINDS = ("events", "features")


@dataclass(frozen=True)
class LoadReport:
    """What loading kept and dropped; contains counts and column names only, no data."""

    source: str
    kind: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_columns: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    n_users: int = 0

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
        """One readable line, e.g. for a merchant's log."""
        line = (
            f"{self.source}: {self.kind} table, {self.rows_read:,} rows read, "
            f"{self.rows_kept:,} kept, {self.n_users:,} customers"
        )
        if self.dropped:
            reasons = ", ".join(f"{n:,} {r}" for r, n in self.dropped.items())
            line += f"; dropped {self.rows_dropped:,} rows ({reasons})"
        if self.dropped_columns:
            line += f"; identifier columns removed: {', '.join(self.dropped_columns)}"
        if self.ignored_columns:
            line += f"; columns ignored: {', '.join(self.ignored_columns)}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "kind": self.kind,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "dropped_columns": list(self.dropped_columns),
            "ignored_columns": list(self.ignored_columns),
            "n_users": self.n_users,
        }


def load_merchant_table(
    source: str | Path | pd.DataFrame,
    *,
    pseudonymizer: Pseudonymizer,
    source_name: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Read and clean one merchant table of either kind.

    Returns the clean table and its report. ``user_id`` holds HMAC pseudonyms
    (a categorical column for events, text for features); events come back with
    ``timestamp`` as ``datetime64[ns, UTC]``, ``event`` categorical over view, cart,
    purchase, review, ``item_id`` text, ``price``/``quantity``/``duration_s`` float
    (``price`` may be NaN on views and reviews) and the optional columns present.
    Features come back as ``user_id`` plus float64 columns, one row per customer."""
    if isinstance(source, pd.DataFrame):
        label = source_name or "<dataframe>"
        raw = source
    else:
        label = source_name or source_label(source)
        raw = read_table(source)
    if raw.shape[1] == 0 or len(raw) == 0:
        raise DataError(f"{label}: empty table (no {'columns' if raw.shape[1] == 0 else 'rows'})")
    raw = normalize_columns(raw, label)
    identifiers = tuple(c for c in raw.columns if c != "user_id" and is_direct_identifier(c))
    if identifiers:
        raw = raw.drop(columns=list(identifiers))
    kind = detect_kind(list(raw.columns), label)
    ignored: tuple[str, ...] = ()
    if kind == "events":
        ignored = tuple(c for c in raw.columns if c not in EVENT_COLUMNS)
        clean, dropped = validate_events(raw.drop(columns=list(ignored)), label)
    else:
        clean, dropped = validate_features(raw, label)
    clean["user_id"] = _pseudonymize_column(clean["user_id"], pseudonymizer, kind)
    report = LoadReport(
        source=label,
        kind=kind,
        rows_read=len(raw),
        rows_kept=len(clean),
        dropped=dropped,
        dropped_columns=identifiers,
        ignored_columns=ignored,
        n_users=int(clean["user_id"].nunique()),
    )
    return clean, report


def _pseudonymize_column(user_ids: pd.Series, pseudonymizer: Pseudonymizer, kind: str) -> pd.Series:
    """Hash each distinct id once; events keep a compact categorical column."""
    codes, uniques = pd.factorize(user_ids)
    hashed = pseudonymizer.pseudonymize(uniques.tolist())  # plain str: no per-item Arrow reads
    if kind == "features":
        rows = [hashed[c] for c in codes.tolist()]
        return pd.Series(rows, index=user_ids.index, name="user_id", dtype="str")
    pseudonyms = pd.Index(hashed, dtype="str")
    return pd.Series(
        pd.Categorical.from_codes(codes, categories=pseudonyms),
        index=user_ids.index,
        name="user_id",
    )
