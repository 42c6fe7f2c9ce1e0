"""Read a merchant table from CSV, Parquet, SQLite or another SQL database.

CSV cells are read as text so that validation, not the CSV reader, decides what a
malformed number or timestamp is (and counts it).
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
from fedseg.client.errors import DataError

try:  # pandas' conversion used by pd.read_parquet (private, hence the fallback)
    from pandas.io._util import arrow_table_to_pandas as _arrow_table_to_pandas
except ImportError:  # pragma: no cover - depends on the pandas version
    _arrow_table_to_pandas = None

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a whole table; raise :class:`DataError` naming the source when it cannot be read.

    ``source`` is a ``.csv``/``.parquet`` path or a URL such as
    ``sqlite:///shop.db?table=events`` (other SQL URLs go through SQLAlchemy)."""
    text = str(source)
    if "://" in text:
        return _read_sql(text)
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
    raise DataError(f"{path}: unsupported file type (expected .csv, .parquet or a SQL URL)")


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
        raise DataError(f"{path}: unreadable CSV ({_first_line(exc)})") from None


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
        table = handle.read(use_pandas_metadata=True)
    with warnings.catch_warnings():  # as pd.read_parquet does
        warnings.filterwarnings("ignore", "make_block is deprecated")
        frame = _arrow_table_to_pandas(table)
    metadata = table.schema.metadata or {}
    if b"PANDAS_ATTRS" in metadata:
        frame.attrs = json.loads(metadata[b"PANDAS_ATTRS"])
    return frame


def _read_sql(url: str) -> pd.DataFrame:
    parts = urlsplit(url)
    tables = parse_qs(parts.query).get("table")
    if not tables or not tables[0]:
        raise DataError(f"{url}: SQL source needs ?table=NAME")
    table = tables[0]
    if parts.scheme == "sqlite":
        return _read_sqlite(url, unquote(parts.path), table)
    return _read_sqlalchemy(url, table)


def _read_sqlite(url: str, path_part: str, table: str) -> pd.DataFrame:
    # sqlite:///relative.db has path "/relative.db"; sqlite:////abs.db has "//abs.db".
    db_path = Path(path_part[1:] if path_part.startswith("/") else path_part)
    if not db_path.is_file():
        raise DataError(f"{url}: database file {db_path} not found")
    try:
        with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as connection:
            names = [r[0] for r in connection.execute("SELECT name FROM sqlite_master")]
            if table not in names:
                raise DataError(f"{url}: no table {table!r} (tables: {', '.join(names) or 'none'})")
            quoted = '"' + table.replace('"', '""') + '"'
            return pd.read_sql_query(f"SELECT * FROM {quoted}", connection)
    except sqlite3.Error as exc:
        raise DataError(f"{url}: unreadable SQLite database ({_first_line(exc)})") from None


def _read_sqlalchemy(url: str, table: str) -> pd.DataFrame:
    try:
        import sqlalchemy
    except ImportError:
        raise DataError(
            f"{_redact(url)}: reading this SQL source needs SQLAlchemy installed"
        ) from None
    try:
        engine_url = sqlalchemy.engine.make_url(url).difference_update_query(["table"])
        engine = sqlalchemy.create_engine(engine_url)
        try:
            with engine.connect() as connection:
                return pd.read_sql_table(table, connection)
        finally:
            engine.dispose()
    except ValueError as exc:  # pandas: table not found
        raise DataError(f"{_redact(url)}: {_first_line(exc)}") from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        raise DataError(f"{_redact(url)}: cannot read SQL table ({_first_line(exc)})") from None


def _redact(url: str) -> str:
    """Hide a password in a database URL before it goes into an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def source_label(source: object) -> str:
    """A printable name for a source, with any database password hidden."""
    return _redact(str(source))
