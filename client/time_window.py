"""The run's public time window for merchant events: from ``floor`` to ``as_of``, in UTC.

``as_of`` is a public run parameter: every merchant measures recency from it, so no
customer's feature depends on another customer's latest event. Events after it (a clock
set to 2200) or before ``floor`` (default: 20 years before ``as_of``; a 1900 sentinel)
are dropped and counted by the loader, never an error, so one row cannot move every
other customer's recency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_SPAN_YEARS = 20


@dataclass(frozen=True)
class TimeWindow:
    """Events are kept when ``floor <= timestamp <= as_of``; None leaves that side open."""

    as_of: pd.Timestamp | None = None
    floor: pd.Timestamp | None = None

    @classmethod
    def of(cls, as_of: object = None, floor: object = None) -> TimeWindow:
        """The window for a run's ``as_of`` and ``floor`` (any time pandas reads; naive is
        UTC, a date is its midnight); ``floor`` defaults to ``as_of`` minus 20 years."""
        end, start = _utc(as_of, "as_of"), _utc(floor, "floor")
        if start is None and end is not None:
            start = end - pd.DateOffset(years=DEFAULT_SPAN_YEARS)
        if start is not None and end is not None and not start < end:
            raise ValueError(f"floor {start} must be before as_of {end}")
        return cls(end, start)

    def outside(self, times: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the times after ``as_of`` and before ``floor`` (NaT is neither)."""
        none = np.zeros(len(times), dtype=bool)
        if self.as_of is None and self.floor is None:
            return none, none
        ns = pd.DatetimeIndex(times).as_unit("ns").asi8
        known = ns != np.iinfo(np.int64).min  # NaT
        late = known & (ns > self.as_of.value) if self.as_of is not None else none
        early = known & (ns < self.floor.value) if self.floor is not None else none
        return late, early

    def describe(self) -> str:
        """``"2005-01-01 to 2025-01-01 (UTC)"`` for reports; empty when there is no window."""
        if self.as_of is None and self.floor is None:
            return ""
        start = "the earliest event" if self.floor is None else _day_or_time(self.floor)
        end = "the latest event" if self.as_of is None else _day_or_time(self.as_of)
        return f"{start} to {end} (UTC)"


def _utc(value: object, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            raise ValueError("NaT")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.as_unit("ns")  # years 1677-2262, like every loaded timestamp
    except (ValueError, TypeError, OverflowError):
        raise ValueError(
            f"{name} must be a time between 1677 and 2262 (ISO 8601 date or datetime, UTC)"
        ) from None


def _day_or_time(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M:%S")
