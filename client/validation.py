"""Row rules on a typed merchant table: every bad row is dropped and counted, never fatal.

The rules run on the typed columns of :mod:`fedseg.client.typed_tables` and parse
nothing. Each row is charged to the *first* rule it breaks, in the order listed below,
so the counts add up to the number of rows dropped. Whatever a kept row holds, nothing
downstream (features, statistics) can fail on it.

Events rules, in order: ``missing user_id`` / ``bad user_id`` (not UTF-8 text),
``missing timestamp``, ``bad timestamp`` (not ISO 8601 or Unix seconds, or outside
1677-2262), ``after as_of``, ``before floor`` (the run's public time window),
``missing event``, ``unknown event`` (see :mod:`fedseg.client.schema` for the names and
aliases accepted), ``missing item_id`` / ``bad item_id``, ``missing price`` (purchase and
cart rows only; views and reviews may omit a price), ``bad price`` (not a finite number),
``negative price``, then ``bad``/``negative`` for ``quantity``, ``duration_s`` (``bad``
also when so large that a customer's sum could overflow), ``rating``, ``amount
overflows`` (a purchase whose price × quantity is that large, or not finite),
``bad category``,
``missing session_id`` (when the column exists: sessions are counted from it),
``missing order_id`` (purchase rows, when the column exists: orders are counted from it),
and last ``duplicate row`` (identical to an earlier kept row after parsing).
Missing ``quantity`` means 1, missing ``duration_s`` means 0.

Features rules: ``missing user_id`` / ``bad user_id``, ``missing value``, ``bad value``
(not a finite number), ``duplicate row`` (an exact copy: one copy is kept),
``conflicting user_id`` (same user, different values: every such row is dropped, since
nobody can tell which one is right).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fedseg.client.time_window import TimeWindow
from fedseg.client.typed_tables import TypedTable

# Sums of up to 2**53 rows (more than any table holds) of values below this stay finite.
LARGEST_SUMMABLE = float(np.finfo(np.float64).max) / 2**53
# Rows dropped by these rules are normal in good data; strict mode refuses only the others.
EXPECTED_DROPS = frozenset({"after as_of", "before floor", "duplicate row"})
_SUMMED = ("quantity", "duration_s")  # per customer; prices are summed as amounts


class RowChecks:
    """The first failed rule of every row; rows with none are kept."""

    def __init__(self, n_rows: int) -> None:
        self._reasons: list[str] = []
        self._first = np.full(n_rows, -1, dtype=np.int16)

    def flag(self, reason: str, failed: np.ndarray) -> None:
        """Charge ``reason`` to every row in ``failed`` that has not failed an earlier rule."""
        if reason not in self._reasons:
            self._reasons.append(reason)
        self._first[(self._first < 0) & failed] = self._reasons.index(reason)

    @property
    def keep(self) -> np.ndarray:
        return self._first < 0

    def counts(self) -> dict[str, int]:
        tally = np.bincount(self._first[self._first >= 0], minlength=len(self._reasons))
        return {r: int(c) for r, c in zip(self._reasons, tally, strict=True) if c}

    def first_rows(self) -> dict[str, int]:
        """The first row (numbered from 1) charged to each reason."""
        flagged = np.flatnonzero(self._first >= 0)
        codes, first = np.unique(self._first[flagged], return_index=True)
        return {self._reasons[c]: int(flagged[f]) + 1 for c, f in zip(codes, first, strict=True)}


def check_events(typed: TypedTable, window: TimeWindow) -> RowChecks:
    """Apply the events rules, in the documented order, to one typed table."""
    frame, columns = typed.frame, typed.columns
    checks = RowChecks(len(typed))
    _flag_parse(checks, typed, "user_id")
    _flag_parse(checks, typed, "timestamp")
    late, early = window.outside(frame["timestamp"])
    checks.flag("after as_of", late)
    checks.flag("before floor", early)
    _flag_parse(checks, typed, "event", bad="unknown event")
    _flag_parse(checks, typed, "item_id")
    purchase = (frame["event"] == "purchase").to_numpy()
    needs_price = purchase | (frame["event"] == "cart").to_numpy()
    checks.flag("missing price", columns["price"].missing & needs_price)
    for name in ("price", "quantity", "duration_s", "rating"):
        if name in columns:
            values = frame[name].to_numpy()
            too_large = np.abs(values) > LARGEST_SUMMABLE if name in _SUMMED else False
            checks.flag(f"bad {name}", columns[name].bad | too_large)
            checks.flag(f"negative {name}", values < 0)
    with np.errstate(over="ignore", invalid="ignore"):
        amount = frame["price"].to_numpy() * frame["quantity"].to_numpy()
    checks.flag("amount overflows", purchase & ~(np.abs(amount) <= LARGEST_SUMMABLE))
    if "category" in columns:
        checks.flag("bad category", columns["category"].bad)
    if "session_id" in columns:
        _flag_parse(checks, typed, "session_id")
    if "order_id" in columns:
        checks.flag("missing order_id", columns["order_id"].missing & purchase)
        checks.flag("bad order_id", columns["order_id"].bad & purchase)
    _flag_duplicates(frame, checks)
    return checks


def _flag_parse(checks: RowChecks, typed: TypedTable, name: str, *, bad: str = "") -> None:
    parsed = typed.columns[name]
    checks.flag(f"missing {name}", parsed.missing)
    checks.flag(bad or f"bad {name}", parsed.bad)


def _flag_duplicates(frame: pd.DataFrame, checks: RowChecks) -> None:
    kept = np.flatnonzero(checks.keep)
    duplicate = np.zeros(len(frame), dtype=bool)
    duplicate[kept] = frame.iloc[kept].duplicated(keep="first").to_numpy()
    checks.flag("duplicate row", duplicate)


def check_features(typed: TypedTable) -> RowChecks:
    """Apply the features rules to one typed table."""
    checks = RowChecks(len(typed))
    _flag_parse(checks, typed, "user_id")
    checks.flag("missing value", typed.missing_value)
    checks.flag("bad value", typed.bad_value)
    users = pd.factorize(typed.columns["user_id"].values)[0]  # equal ids, equal codes; missing: -1
    if typed.block is not None:
        _flag_duplicate_vectors(users, typed.block, checks)
    else:
        _flag_duplicates(typed.frame, checks)
    kept = np.flatnonzero(checks.keep)
    conflicting = np.zeros(len(typed), dtype=bool)
    conflicting[kept] = np.bincount(users[kept], minlength=1)[users[kept]] > 1
    checks.flag("conflicting user_id", conflicting)
    return checks


def _flag_duplicate_vectors(users: np.ndarray, values: np.ndarray, checks: RowChecks) -> None:
    """``_flag_duplicates`` for a user code plus a float block, without a DataFrame.

    Kept rows hold finite values only, and ``+ 0.0`` turns -0.0 into 0.0, so two rows
    are equal (as ``DataFrame.duplicated`` compares them) exactly when their bits are."""
    kept = np.flatnonzero(checks.keep)
    if len(kept) == 0 or np.bincount(users[kept]).max() <= 1:
        return  # equal rows need an equal user: one row per customer (the usual) has none
    rows = np.column_stack([users[kept], (values[kept] + 0.0).view(np.int64)])
    _, first = np.unique(rows, axis=0, return_index=True)  # a stable sort: first copies
    duplicate = np.ones(len(kept), dtype=bool)
    duplicate[first] = False
    flagged = np.zeros(len(users), dtype=bool)
    flagged[kept] = duplicate
    checks.flag("duplicate row", flagged)
