"""Parse one column of a merchant table into clean values plus per-row missing/bad masks.

Each parser accepts what CSV (text), Parquet (typed) and SQL (mixed) readers produce, so
the three formats give identical results. Nothing here drops a row: the caller decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from fedseg.client.errors import DataError


@dataclass(frozen=True)
class ParsedColumn:
    """Clean values of one column with per-row masks (``bad`` excludes ``missing``)."""

    values: pd.Series
    missing: np.ndarray
    bad: np.ndarray


def parse_text(column: pd.Series) -> ParsedColumn:
    """Identifiers and labels as stripped text; integral floats (``7.0``) become ``"7"``."""
    if _plain_integers(column):  # no gaps, no spaces: the digits alone, without pandas' passes
        text = pd.Series(
            [str(v) for v in column.tolist()], index=column.index, name=column.name, dtype="str"
        )
        return ParsedColumn(text, np.zeros(len(column), dtype=bool), np.zeros(len(column), bool))
    if pd.api.types.is_float_dtype(column) and _integral(column):
        column = column.astype("Int64")
    text = column.astype("str").str.strip()
    missing = column.isna().to_numpy() | (text == "").to_numpy()
    if missing.any():
        text = text.where(~missing)
    return ParsedColumn(text, missing, np.zeros(len(column), dtype=bool))


def _plain_integers(column: pd.Series) -> bool:
    """A NumPy integer column (Parquet, SQL ids): it cannot hold a gap."""
    return isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu"


def parse_number(column: pd.Series) -> ParsedColumn:
    """Finite float64 values; text that is not a number, and ±inf, are ``bad``."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.astype("float64")
        missing = values.isna().to_numpy()
    else:
        text = column.astype("str").str.strip().where(column.notna())
        missing = (text.isna() | (text == "")).to_numpy()
        values = _text_to_float(text.where(~missing))
    finite = np.isfinite(values.to_numpy())
    return ParsedColumn(values.where(finite), missing, ~finite & ~missing)


def _text_to_float(text: pd.Series) -> pd.Series:
    try:  # fast path: every value is a number
        return text.astype("float64")
    except (ValueError, TypeError):
        return pd.to_numeric(text, errors="coerce").astype("float64")


def parse_timestamp(column: pd.Series) -> ParsedColumn:
    """UTC ``datetime64[ns]`` from datetimes, ISO 8601 text or Unix seconds.

    Naive times are taken as UTC. Other text formats (``1/3/2024`` is ambiguous) are bad."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        values = column.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(column):
        values = column.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(column):
        values = _from_unix_seconds(column.astype("float64"))
    else:
        text = column.astype("str").str.strip().where(column.notna())
        text = text.where(text != "")
        if _looks_like_unix_seconds(text):
            values = _from_unix_seconds(pd.to_numeric(text, errors="coerce"))
        else:
            values = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        missing = text.isna().to_numpy()
        values = _as_ns(values)
        return ParsedColumn(values, missing, values.isna().to_numpy() & ~missing)
    values = _as_ns(values)
    missing = column.isna().to_numpy()
    return ParsedColumn(values, missing, values.isna().to_numpy() & ~missing)


def _as_ns(values: pd.Series) -> pd.Series:
    """Nanosecond resolution; times it cannot hold (before 1677 or after 2262, such as
    the sentinel ``9999-12-31``) become NaT, so they count as bad rows, not a crash."""
    low, high = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    return values.where(values.isna() | ((values >= low) & (values <= high))).dt.as_unit("ns")


def _looks_like_unix_seconds(text: pd.Series) -> bool:
    """Numbers rather than dates, judged on the first 100 values (a full parse is slow)."""
    sample = text.dropna().head(100)
    return bool(len(sample)) and bool(sample.str.fullmatch(r"[+-]?\d+(\.\d*)?").all())


def _from_unix_seconds(seconds: pd.Series) -> pd.Series:
    finite = seconds.where(np.isfinite(seconds))
    return pd.to_datetime(finite, unit="s", utc=True, errors="coerce")


def _integral(column: pd.Series) -> bool:
    values = column.dropna().to_numpy()
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def refuse_unusable(
    source: str,
    name: str,
    raw: pd.Series,
    parsed: ParsedColumn,
    *,
    expected: str,
    allow_empty: bool = False,
) -> None:
    """A column with values but not one valid is the wrong kind of data, not bad rows."""
    valid = ~parsed.missing & ~parsed.bad
    if parsed.missing.all() and not allow_empty:
        raise DataError(f"{source}: column {name!r} is empty")
    if parsed.bad.any() and not valid.any():
        row = int(np.flatnonzero(parsed.bad)[0])
        raise DataError(
            f"{source}: column {name!r} has no valid values, expected {expected} "
            f"(row {row + 1}: {raw.iloc[row]!r})"
        )
