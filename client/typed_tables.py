"""A merchant table parsed once, column by column, against its schema.

Every column is read by the one parser its schema names (:mod:`fedseg.client.parsing`)
into clean values and per-row ``missing``/``bad`` masks; :mod:`fedseg.client.validation`
then applies the row rules to these typed columns and never parses again. A column
with values but not one valid value is the wrong kind of data, not bad rows: that is
one :class:`DataError` naming the file, the column and the first row, never a cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from fedseg.client.errors import DataError
from fedseg.client.parsing import (
    ParsedColumn,
    parse_event,
    parse_number,
    parse_text,
    parse_timestamp,
)
from fedseg.client.schema import EVENT_NAMES

# Events columns and their parsers, in the order of the clean table.
EVENT_PARSERS: dict[str, Callable[[pd.Series], ParsedColumn]] = {
    "user_id": parse_text,
    "timestamp": parse_timestamp,
    "event": parse_event,
    "item_id": parse_text,
    "price": parse_number,
    "quantity": parse_number,
    "duration_s": parse_number,
    "rating": parse_number,
    "category": parse_text,
    "session_id": parse_text,
    "order_id": parse_text,
}
_EXPECTED = {
    "timestamp": "ISO 8601 times or Unix seconds",
    "event": ", ".join(EVENT_NAMES),
    "user_id": "identifiers",
    "item_id": "identifiers",
}
_MAY_BE_EMPTY = frozenset({"price", "quantity", "duration_s", "rating", "category",
                           "session_id", "order_id"})  # fmt: skip
_DEFAULTS = {"quantity": 1.0, "duration_s": 0.0}  # a gap means one unit, no browsing time
_FEATURE_VALUES = "numbers (a features table is user_id plus numeric columns)"


@dataclass(frozen=True)
class TypedTable:
    """Typed columns of one table (row ``i`` is the ``i``-th row read) and their masks.

    ``frame`` holds the clean values (defaults filled in, cells that are not valid are
    NaN/NaT); ``columns`` the parse of each column. Features tables parsed as one
    float64 block keep it in ``block`` (columns ``block_names``) with per-row
    ``missing``/``bad`` over all values, and build ``frame`` only when asked: loading
    builds its clean table from the block's kept rows instead."""

    parsed_frame: pd.DataFrame | None
    columns: dict[str, ParsedColumn]
    block: np.ndarray | None = None
    missing_value: np.ndarray | None = None
    bad_value: np.ndarray | None = None
    block_names: pd.Index | None = None

    @cached_property
    def frame(self) -> pd.DataFrame:
        if self.parsed_frame is not None:
            return self.parsed_frame
        frame = pd.DataFrame(self.block, columns=self.block_names)
        frame.insert(0, "user_id", self.columns["user_id"].values.array)
        return frame

    def __len__(self) -> int:
        return len(self.block) if self.block is not None else len(self.parsed_frame)


def type_events(table: pd.DataFrame, source: str) -> TypedTable:
    """Parse every events column once; refuse a column that holds no valid value."""
    columns: dict[str, ParsedColumn] = {}
    clean: dict[str, pd.Series] = {}
    for name, parse in EVENT_PARSERS.items():
        if name not in table.columns:
            if name in _DEFAULTS:
                clean[name] = pd.Series(_DEFAULTS[name], index=table.index, dtype="float64")
            continue
        parsed = parse(table[name])
        refuse_unusable(source, name, parsed.missing, parsed.bad, allow_empty=name in _MAY_BE_EMPTY)
        columns[name] = parsed
        clean[name] = _clean_values(name, parsed)
    return TypedTable(pd.DataFrame(clean).reset_index(drop=True), columns)


def _clean_values(name: str, parsed: ParsedColumn) -> pd.Series:
    if name in _DEFAULTS:
        return parsed.values.fillna(_DEFAULTS[name])
    if name == "category":
        return parsed.values.str.lower().astype("category")
    return parsed.values


def type_features(table: pd.DataFrame, source: str) -> TypedTable:
    """``user_id`` as text and every other column as float64."""
    user_ids = table["user_id"]
    user = parse_text(user_ids)
    refuse_unusable(source, "user_id", user.missing, user.bad)
    ids = table.columns.get_loc("user_id")
    # a slice of an Arrow-backed Index costs a fifteenth of a delete; ids usually come first
    names = table.columns[1:] if ids == 0 else table.columns.delete(ids)
    if all(_plain_numeric(dtype) for dtype in np.delete(table.dtypes.to_numpy(), ids)):
        whole = _plain_numeric(user_ids.dtype)
        block, missing, bad = _numeric_block(table, ids, names, source, whole=whole)
        return TypedTable(None, {"user_id": user}, block, missing, bad, names)
    columns = {"user_id": user}
    for name in names:
        columns[name] = parse_number(table[name])
        parsed = columns[name]
        refuse_unusable(source, name, parsed.missing, parsed.bad, expected=_FEATURE_VALUES)
    frame = pd.DataFrame({name: parsed.values for name, parsed in columns.items()})
    values = [columns[name] for name in names]
    missing = np.logical_or.reduce([p.missing for p in values])
    bad = np.logical_or.reduce([p.bad for p in values])
    return TypedTable(frame.reset_index(drop=True), columns, None, missing, bad)


def _plain_numeric(dtype: object) -> bool:
    """Numbers, not booleans: decided by the dtype alone (a Series answers the same)."""
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _numeric_block(table: pd.DataFrame, ids: int, names: pd.Index, source: str, *, whole: bool):
    """Typed numeric feature columns (Parquet, SQL) parsed as one float64 block.

    Same result as ``parse_number`` column by column (±inf are bad, NaN missing), in
    one array pass instead of a dozen pandas calls per column: merchants with a few
    hundred customers were dominated by that fixed cost. ``ids`` is the position of the
    ``user_id`` column; ``whole`` says it holds numbers too.
    """
    if whole:
        # one conversion of the whole frame, ids included, then drop them: a pandas call
        # per column costs 20x more on a small table
        block = np.delete(table.to_numpy(dtype=np.float64, na_value=np.nan), ids, axis=1)
    else:  # column by column: selecting ``table[names]`` first costs twice the conversion
        columns = (column for name, column in table.items() if name != "user_id")
        block = np.column_stack([c.to_numpy(dtype=np.float64, na_value=np.nan) for c in columns])
    missing_cells = np.isnan(block)
    bad_cells = np.isinf(block)
    unusable = missing_cells.all(axis=0) | (
        bad_cells.any(axis=0) & ~(~missing_cells & ~bad_cells).any(axis=0)
    )
    for j in np.flatnonzero(unusable):  # raises the column's one clear error
        refuse_unusable(source, names[j], missing_cells[:, j], bad_cells[:, j],
                        expected=_FEATURE_VALUES)  # fmt: skip
    block[bad_cells] = np.nan
    return block, missing_cells.any(axis=1), bad_cells.any(axis=1)


def refuse_unusable(
    source: str,
    name: str,
    missing: np.ndarray,
    bad: np.ndarray,
    *,
    expected: str | None = None,
    allow_empty: bool = False,
) -> None:
    """A column with values but not one valid is the wrong kind of data, not bad rows."""
    if missing.all() and not allow_empty:
        raise DataError(f"{source}: column {name!r} is empty")
    if bad.any() and not (~missing & ~bad).any():
        row = int(np.flatnonzero(bad)[0]) + 1
        what = expected or _EXPECTED.get(name, "numbers")
        raise DataError(
            f"{source}: column {name!r} has no valid values, expected {what} (first at row {row})"
        )
