"""Row-level validation of merchant tables: bad rows are dropped and counted per reason.

Each row is charged to the *first* rule it breaks, in the order the rules are listed
below, so the counts add up to the number of rows dropped.

Events rules, in order: ``missing_user_id``, ``missing_timestamp``, ``bad_timestamp``
(not ISO 8601 or Unix seconds), ``missing_event``, ``unknown_event`` (not view, cart,
purchase, review), ``missing_item_id``, ``missing_price`` (purchase and cart rows only;
views and reviews may omit a price), ``bad_price`` (not a finite number),
``negative_price``, then ``bad_``/``negative_`` for ``quantity``, ``duration_s``, ``rating``,
and last ``duplicate_row`` (identical to an earlier kept row after normalization).
Missing ``quantity`` means 1, missing ``duration_s`` means 0.

Features rules: ``missing_user_id``, ``missing_value``, ``bad_value`` (not a finite number),
``duplicate_row`` (an exact copy: one copy is kept), ``conflicting_user_id`` (same user,
different values: every such row is dropped, since nobody can tell which one is right).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fedseg.client.errors import DataError
from fedseg.client.parsing import (
    ParsedColumn,
    parse_number,
    parse_text,
    parse_timestamp,
    refuse_unusable,
)
from fedseg.client.schema import EVENT_NAMES

_FEATURE_VALUES = "numbers (a features table is user_id plus numeric columns)"
_NUMERIC_OPTIONAL = {"quantity": 1.0, "duration_s": 0.0, "rating": np.nan}


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


def validate_events(table: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Normalized events (``user_id`` still in clear) and the drop counts per reason."""
    checks = RowChecks(len(table))
    clean: dict[str, pd.Series] = {}
    user = _required_text(table, "user_id", source, checks)
    clean["user_id"] = user.values
    stamp = parse_timestamp(table["timestamp"])
    refuse_unusable(source, "timestamp", table["timestamp"], stamp, expected="ISO 8601 times")
    checks.flag("missing_timestamp", stamp.missing)
    checks.flag("bad_timestamp", stamp.bad)
    clean["timestamp"] = stamp.values
    clean["event"] = _event_column(table["event"], source, checks)
    clean["item_id"] = _required_text(table, "item_id", source, checks).values
    clean["price"] = _price_column(table["price"], clean["event"], source, checks)
    for name, default in _NUMERIC_OPTIONAL.items():
        if name in table.columns or not np.isnan(default):  # no rating column: none added
            clean[name] = _optional_number(table, name, default, source, checks)
    for name in ("category", "session_id", "order_id"):
        if name in table.columns:
            clean[name] = parse_text(table[name]).values
    if "category" in clean:
        clean["category"] = clean["category"].str.lower().astype("category")
    frame = pd.DataFrame(clean)
    _flag_duplicates(frame, checks)
    return _kept(frame, checks, source), checks.counts()


def _required_text(table: pd.DataFrame, name: str, source: str, checks: RowChecks) -> ParsedColumn:
    parsed = parse_text(table[name])
    refuse_unusable(source, name, table[name], parsed, expected="identifiers")
    checks.flag(f"missing_{name}", parsed.missing)
    return parsed


def _event_column(raw: pd.Series, source: str, checks: RowChecks) -> pd.Series:
    parsed = parse_text(raw)
    names = parsed.values.str.lower()
    unknown = ~parsed.missing & ~names.isin(EVENT_NAMES).to_numpy()
    bad = ParsedColumn(names, parsed.missing, unknown)
    refuse_unusable(source, "event", raw, bad, expected=", ".join(EVENT_NAMES))
    checks.flag("missing_event", parsed.missing)
    checks.flag("unknown_event", unknown)
    known = names.where(~unknown)
    return pd.Series(pd.Categorical(known, categories=EVENT_NAMES), index=raw.index)


def _price_column(raw: pd.Series, events: pd.Series, source: str, checks: RowChecks) -> pd.Series:
    parsed = parse_number(raw)
    refuse_unusable(source, "price", raw, parsed, expected="numbers", allow_empty=True)
    needs_price = events.isin(("purchase", "cart")).to_numpy()
    checks.flag("missing_price", parsed.missing & needs_price)
    _flag_number_rules(parsed, "price", checks)
    return parsed.values


def _optional_number(
    table: pd.DataFrame, name: str, default: float, source: str, checks: RowChecks
) -> pd.Series:
    if name not in table.columns:
        return pd.Series(default, index=table.index, dtype="float64")
    parsed = parse_number(table[name])
    refuse_unusable(source, name, table[name], parsed, expected="numbers", allow_empty=True)
    _flag_number_rules(parsed, name, checks)
    return parsed.values.fillna(default)


def _flag_number_rules(parsed: ParsedColumn, name: str, checks: RowChecks) -> None:
    checks.flag(f"bad_{name}", parsed.bad)
    checks.flag(f"negative_{name}", (parsed.values < 0).to_numpy())


def _flag_duplicates(frame: pd.DataFrame, checks: RowChecks) -> None:
    kept = np.flatnonzero(checks.keep)
    duplicate = np.zeros(len(frame), dtype=bool)
    duplicate[kept] = frame.iloc[kept].duplicated(keep="first").to_numpy()
    checks.flag("duplicate_row", duplicate)


def _kept(frame: pd.DataFrame, checks: RowChecks, source: str) -> pd.DataFrame:
    if not checks.keep.any():
        reasons = ", ".join(f"{n} {r}" for r, n in checks.counts().items())
        raise DataError(f"{source}: no valid rows ({reasons})")
    return frame.loc[checks.keep].reset_index(drop=True)


def validate_features(table: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """``user_id`` plus float64 feature columns, and the drop counts per reason."""
    checks = RowChecks(len(table))
    user = _required_text(table, "user_id", source, checks)
    clean: dict[str, pd.Series] = {"user_id": user.values}
    names = table.columns[table.columns != "user_id"]
    dtypes = [dtype for name, dtype in table.dtypes.items() if name != "user_id"]
    numeric = all(_plain_numeric(dtype) for dtype in dtypes)
    if numeric:
        values, missing, bad = _numeric_block(table, names, source)
        frame = pd.DataFrame(values, columns=names, index=table.index)
        frame.insert(0, "user_id", user.values)
    else:
        missing = np.zeros(len(table), dtype=bool)
        bad = np.zeros(len(table), dtype=bool)
        for name in names:
            parsed = parse_number(table[name])
            refuse_unusable(source, name, table[name], parsed, expected=_FEATURE_VALUES)
            clean[name] = parsed.values
            missing |= parsed.missing
            bad |= parsed.bad
        frame = pd.DataFrame(clean)
    checks.flag("missing_value", missing)
    checks.flag("bad_value", bad)
    users = pd.factorize(user.values)[0]  # equal ids, equal codes; missing ones are -1
    if numeric:
        _flag_duplicate_vectors(users, values, checks)
    else:
        _flag_duplicates(frame, checks)
    kept = np.flatnonzero(checks.keep)
    conflicting = np.zeros(len(frame), dtype=bool)
    conflicting[kept] = np.bincount(users[kept], minlength=1)[users[kept]] > 1
    checks.flag("conflicting_user_id", conflicting)
    return _kept(frame, checks, source), checks.counts()


def _flag_duplicate_vectors(users: np.ndarray, values: np.ndarray, checks: RowChecks) -> None:
    """``_flag_duplicates`` for a user code plus a float block, without a DataFrame.

    Kept rows hold finite values only, and ``+ 0.0`` turns -0.0 into 0.0, so two rows
    are equal (as ``DataFrame.duplicated`` compares them) exactly when their bits are."""
    kept = np.flatnonzero(checks.keep)
    rows = np.column_stack([users[kept], (values[kept] + 0.0).view(np.int64)])
    _, first = np.unique(rows, axis=0, return_index=True)  # a stable sort: first copies
    duplicate = np.ones(len(kept), dtype=bool)
    duplicate[first] = False
    flagged = np.zeros(len(users), dtype=bool)
    flagged[kept] = duplicate
    checks.flag("duplicate_row", flagged)


def _plain_numeric(dtype: object) -> bool:
    """Numbers, not booleans: decided by the dtype alone (a Series answers the same)."""
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _numeric_block(table: pd.DataFrame, names: pd.Index, source: str):
    """Typed numeric feature columns (Parquet, SQL) parsed as one float64 block.

    Same result as ``parse_number`` column by column (±inf are bad, NaN missing), in
    one array pass instead of a dozen pandas calls per column: merchants with a few
    hundred customers were dominated by that fixed cost.
    """
    # Column by column: selecting ``table[names]`` first costs twice the conversion.
    columns = (column for name, column in table.items() if name != "user_id")
    block = np.column_stack([c.to_numpy(dtype=np.float64, na_value=np.nan) for c in columns])
    missing_cells = np.isnan(block)
    bad_cells = np.isinf(block)
    unusable = missing_cells.all(axis=0) | (
        bad_cells.any(axis=0) & ~(~missing_cells & ~bad_cells).any(axis=0)
    )
    for j in np.flatnonzero(unusable):  # raises the column's one clear error
        name = names[j]
        refuse_unusable(
            source, name, table[name], parse_number(table[name]), expected=_FEATURE_VALUES
        )
    block[bad_cells] = np.nan
    return block, missing_cells.any(axis=1), bad_cells.any(axis=1)
