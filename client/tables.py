"""Read a merchant table from CSV, Parquet, SQLite or another SQL database.

CSV cells are read as text so that validation, not the CSV reader, decides what a
malformed number or timestamp is (and counts it). Error messages name the source and
what is wrong, never a cell's content: a reader's own message that may quote a row is
replaced by ours. SQL sources are URLs (``sqlite:////abs/shop.db?table=events``,
``postgresql://user@host/db?table=events``; see :mod:`fedseg.client.sql_sources`).
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import pandas as pd
from fedseg.client.errors import DataError
from fedseg.client.sql_sources import (
    SQLITE_SUFFIXES,
    read_sql,
    read_sqlite_file,
    redact,
    restore_url,
)

try:  # pandas' conversion used by pd.read_parquet (private, hence the fallback)
    from pandas.io._util import arrow_table_to_pandas as _arrow_table_to_pandas
except ImportError:  # pragma: no cover - depends on the pandas version
    _arrow_table_to_pandas = None

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_THREADED_ROWS = 50_000
# A merchant's file in a federation folder (merchants/<merchant_id>.csv, .parquet or .db).
MERCHANT_SUFFIXES = (".csv", ".parquet", *SQLITE_SUFFIXES)
_FIELD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a whole table; raise :class:`DataError` naming the source when it cannot be read.

    ``source`` is a ``.csv``/``.parquet`` path or a SQL URL such as
    ``sqlite:///shop.db?table=events`` (other SQL URLs go through SQLAlchemy), or a SQLite
    file ``shop.db`` (its only table, else ``events`` or ``features``). A URL whose
    ``//`` a path type collapsed (``sqlite:/abs/shop.db?table=events``) is read as meant."""
    url = restore_url(source)
    if url is not None:
        return read_sql(url)
    path = Path(source)
    name = path.name.lower()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if name.endswith(_CSV_SUFFIXES):
        return _read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    if name.endswith(_PARQUET_SUFFIXES):
        return _read_parquet(path)
    if name.endswith(SQLITE_SUFFIXES):
        return read_sqlite_file(path)
    raise DataError(
        f"{path}: unsupported file type (expected .csv, .parquet, a SQLite .db or a SQL URL)"
    )


def source_label(source: object) -> str:
    """A printable name for a source, with any database password hidden."""
    url = restore_url(source)
    return redact(url if url is not None else str(source))


def _read_csv(path: Path, *, sep: str) -> pd.DataFrame:
    # The pyarrow parser is ~5x faster, and refuses a row with too many fields (the C
    # parser silently turns the first field into an index).
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    try:
        return pd.read_csv(path, sep=sep, dtype=str, engine="pyarrow")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid, ParserError, OSError, ...
        if "invalid UTF8" in str(exc):
            return _read_csv_bytes(path, sep=sep)
        raise DataError(f"{path}: unreadable CSV ({_csv_problem(path, sep, exc)})") from None


def _read_csv_bytes(path: Path, *, sep: str) -> pd.DataFrame:
    """A CSV that is not all UTF-8: every column as bytes, so that the parsers count the
    undecodable cells as bad rows instead of losing the file."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from fedseg.client.parsing import MISSING_TEXT

    try:
        with pcsv.open_csv(path, parse_options=pcsv.ParseOptions(delimiter=sep)) as reader:
            names = reader.schema.names
        convert = pcsv.ConvertOptions(
            column_types={n: pa.binary() for n in names},
            null_values=sorted(MISSING_TEXT),
            strings_can_be_null=True,
        )
        table = pcsv.read_csv(
            path, parse_options=pcsv.ParseOptions(delimiter=sep), convert_options=convert
        )
    except UnicodeDecodeError:
        raise DataError(f"{path}: unreadable CSV (the header is not UTF-8 text)") from None
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure is an unreadable file
        raise DataError(f"{path}: unreadable CSV ({_csv_problem(path, sep, exc)})") from None
    frame = table.to_pandas()
    frame.columns = [n.encode("utf-8", "replace").decode() if isinstance(n, bytes) else n
                     for n in frame.columns]  # fmt: skip
    return frame


def _csv_problem(path: Path, sep: str, exc: BaseException) -> str:
    """What is wrong, in our words: pyarrow's own message quotes the offending row."""
    fields = _FIELD_COUNT.search(str(exc))
    if fields is None:
        return _first_line(exc)
    row = _first_ragged_row(path, sep, int(fields.group(1)))
    where = f"row {row}" if row else "a row"
    found = f"{fields.group(2)} field" + ("" if fields.group(2) == "1" else "s")
    return f"{where} has {found}, the header has {fields.group(1)}"


def _first_ragged_row(path: Path, sep: str, width: int) -> int | None:
    """Data row number (from 1) of the first row without ``width`` fields; error path only."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for number, row in enumerate(csv.reader(handle, delimiter=sep)):
                if number and row and len(row) != width:
                    return number
    except (OSError, csv.Error):
        return None
    return None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return _parquet_frame(path)
    except Exception as exc:  # pyarrow raises many types (ArrowInvalid, OSError, ...)
        raise DataError(f"{path}: unreadable Parquet ({_first_line(exc)})") from None


def _parquet_frame(path: Path) -> pd.DataFrame:
    """What ``pd.read_parquet(path)`` returns, in a third of the time for small files.

    ``pd.read_parquet`` opens a single file through pyarrow's dataset layer (~1 ms of
    set-up, most of a small merchant's read); ``ParquetFile.read`` reads the same table,
    and pandas' own Arrow-to-pandas conversion then gives the same frame, dtypes and attrs.
    """
    if _arrow_table_to_pandas is None:  # pandas moved its helper: the public way
        return pd.read_parquet(path)
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as handle:
        # Arrow's thread pool costs more than it saves on a small file (0.8 → 0.5 ms CPU
        # per 100-row file); large ones keep it.
        threads = handle.metadata.num_rows >= _THREADED_ROWS
        table = handle.read(use_threads=threads, use_pandas_metadata=True)
    with warnings.catch_warnings():  # as pd.read_parquet does
        warnings.filterwarnings("ignore", "make_block is deprecated")
        frame = _arrow_table_to_pandas(table, to_pandas_kwargs={"use_threads": threads})
    metadata = table.schema.metadata or {}
    if b"PANDAS_ATTRS" in metadata:
        frame.attrs = json.loads(metadata[b"PANDAS_ATTRS"])
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
