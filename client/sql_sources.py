"""SQL sources: ``sqlite:///path.db?table=NAME`` and other SQLAlchemy URLs with ``?table=NAME``.

``sqlite:///shop.db`` is relative to the working directory, ``sqlite:////data/shop.db``
absolute. SQLite is read with the standard library; other databases go through
SQLAlchemy, and PostgreSQL needs its driver: ``pip install 'fedseg[postgres]'``. A SQLite
file given as a path (``shop.db``, or ``merchants/<merchant_id>.db`` in a federation) is its
only table, else its ``events`` or ``features`` table.

Credentials never sit in the URL, where process lists, shell history and logs show it:
a URL with a password is refused. The password comes from a file named in the URL
(``postgresql://shop@db.internal/sales?table=events&password-file=/etc/fedseg/db.pass``,
its first line) or, for PostgreSQL, from the ``PGPASSWORD`` environment variable (and
libpq's own ``~/.pgpass``). Every message names the source through :func:`redact`.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
from fedseg.client.errors import DataError

_SQL_SCHEME = re.compile(r"(sqlite|postgres|postgresql|mysql|mariadb|mssql|oracle)(\+\w+)?")
_SOURCE_OPTIONS = ("table", "password-file")  # ours, not the database driver's


def restore_url(source: object) -> str | None:
    """The SQL URL ``source`` names, or None for a file path.

    A path type collapses ``//``: ``Path("sqlite:////data/shop.db?table=t")`` prints as
    ``sqlite:/data/shop.db?table=t``. Such a text is read as the URL it came from (for
    SQLite: the absolute file if it exists, else the relative one)."""
    text = str(source)
    if "://" in text:
        return text
    scheme, _, rest = text.partition(":")
    if not _SQL_SCHEME.fullmatch(scheme) or not rest.startswith("/") or rest.startswith("//"):
        return None
    if Path(text).exists():
        return None
    if scheme.startswith("sqlite"):
        absolute = Path(unquote(urlsplit(rest).path))
        return f"{scheme}:///{'/' if absolute.is_file() else ''}{rest[1:]}"
    return f"{scheme}://{rest[1:]}"


def redact(url: str) -> str:
    """Hide a password in a database URL before it goes into any message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def read_sql(url: str) -> pd.DataFrame:
    """The whole table named by ``?table=``; DataError naming the (redacted) URL otherwise."""
    parts = urlsplit(url)
    tables = parse_qs(parts.query).get("table")
    label = redact(url)
    if not tables or not tables[0]:
        raise DataError(f"{label}: SQL source needs ?table=NAME")
    if parts.password is not None:
        raise DataError(
            f"{label}: a password in the URL shows in process lists and logs; put it in "
            "PGPASSWORD or in a file named by ?password-file=PATH"
        )
    if parts.scheme == "sqlite":
        return _read_sqlite(label, unquote(parts.path), tables[0])
    return _read_sqlalchemy(url, label, tables[0])


SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_DEFAULT_TABLES = ("events", "features")


def read_sqlite_file(path: Path, *, limit: int | None = None) -> pd.DataFrame:
    """A SQLite database file given as a path (``shop.db``, ``merchants/north.db``): its only
    table, else its ``events`` or ``features`` table (its first ``limit`` rows, if given)."""
    return _read_sqlite(str(path), "/" + str(path), None, limit=limit)


def _read_sqlite(
    label: str, path_part: str, table: str | None, *, limit: int | None = None
) -> pd.DataFrame:
    # sqlite:///relative.db has path "/relative.db"; sqlite:////abs.db has "//abs.db".
    db_path = Path(path_part[1:] if path_part.startswith("/") else path_part)
    if not db_path.is_file():
        raise DataError(f"{label}: database file {db_path} not found")
    try:
        with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as connection:
            names = [
                r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type IN "
                                                 "('table', 'view') ORDER BY name")
            ]  # fmt: skip
            table = table or _only_table(label, names)
            if table not in names:
                raise DataError(
                    f"{label}: no table {table!r} (tables: {', '.join(names) or 'none'})"
                )
            quoted = '"' + table.replace('"', '""') + '"'
            rows = "" if limit is None else f" LIMIT {int(limit)}"
            return pd.read_sql_query(f"SELECT * FROM {quoted}{rows}", connection)
    except sqlite3.Error as exc:
        raise DataError(f"{label}: unreadable SQLite database ({_first_line(exc)})") from None


def _only_table(label: str, names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    for name in _DEFAULT_TABLES:
        if name in names:
            return name
    listed = ", ".join(names) or "none"
    raise DataError(
        f"{label}: which table? (tables: {listed}); name one as sqlite:///{label}?table=NAME"
    )


def _read_sqlalchemy(url: str, label: str, table: str) -> pd.DataFrame:
    try:
        import sqlalchemy
    except ImportError:
        raise DataError(
            f"{label}: reading this SQL source needs SQLAlchemy and the database's driver "
            "(PostgreSQL: pip install 'fedseg[postgres]')"
        ) from None
    password = ""
    try:
        engine_url = sqlalchemy.engine.make_url(url)
        password = _password(engine_url, label)
        engine_url = engine_url.difference_update_query(_SOURCE_OPTIONS)
        if engine_url.drivername == "postgres":  # the old spelling some hosts still print
            engine_url = engine_url.set(drivername="postgresql")
        if password:
            engine_url = engine_url.set(password=password)
        engine = sqlalchemy.create_engine(engine_url)
        try:
            with engine.connect() as connection:
                return pd.read_sql_table(table, connection)
        finally:
            engine.dispose()
    except DataError:
        raise
    except ValueError as exc:  # pandas: table not found
        raise DataError(f"{label}: {_scrub(exc, password)}") from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        hint = (
            " (PostgreSQL: pip install 'fedseg[postgres]')" if isinstance(exc, ImportError) else ""
        )
        raise DataError(f"{label}: cannot read SQL table ({_scrub(exc, password)}){hint}") from None


def _password(engine_url, label: str) -> str:
    """From ``?password-file=PATH`` (first line), else ``PGPASSWORD`` for PostgreSQL."""
    path = engine_url.query.get("password-file")
    if isinstance(path, tuple):
        path = path[0]
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise DataError(f"{label}: cannot read the password file {path}") from None
        if not lines or not lines[0]:
            raise DataError(f"{label}: the password file {path} is empty")
        return lines[0]
    if engine_url.drivername.split("+")[0] in ("postgresql", "postgres"):
        return os.environ.get("PGPASSWORD", "")
    return ""


def _scrub(exc: BaseException, password: str) -> str:
    """The first line of a driver's message, with the password cut out should it appear."""
    line = _first_line(exc)
    return line.replace(password, "***") if password else line


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
