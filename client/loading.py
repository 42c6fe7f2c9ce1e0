"""Load a merchant's table: read, drop direct identifiers, parse once, validate, pseudonymize.

This is the first step at the client: nothing downstream ever sees an email address or
a clear ``user_id``. The table goes through each step once:

1. read (:mod:`fedseg.client.tables`: CSV, Parquet, SQLite or another SQL database);
2. normalize column names, drop direct identifiers, tell events from features
   (:mod:`fedseg.client.schema`);
3. parse each column once against the schema into typed columns
   (:mod:`fedseg.client.typed_tables`);
4. apply the row rules to the typed columns (:mod:`fedseg.client.validation`): a bad
   row is dropped and counted per reason in the :class:`LoadReport`, never fatal;
5. replace ``user_id`` by keyed pseudonyms.

A table that cannot be used at all (unreadable, empty, a required column missing or
holding no valid value) raises one :class:`DataError` line naming the file, the column
or row and what is wrong, never a cell's content.

Accepted event names: ``view``, ``cart``, ``purchase``, ``review``, in any case, and the
aliases ``page_view``/``pageview``/``product_view`` (view), ``add_to_cart``/``addtocart``
(cart), ``order``/``transaction``/``buy`` (purchase) and ``rating`` (review). Rows with
other names are dropped as ``unknown event``; ``strict=True`` refuses the table instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from fedseg.client.errors import DataError
from fedseg.client.load_report import KINDS, LoadReport
from fedseg.client.parsing import text_array
from fedseg.client.schema import (
    EVENT_COLUMNS,
    detect_kind,
    is_direct_identifier,
    normalize_columns,
)
from fedseg.client.tables import read_table, source_label
from fedseg.client.time_window import TimeWindow
from fedseg.client.typed_tables import TypedTable, type_events, type_features
from fedseg.client.validation import EXPECTED_DROPS, RowChecks, check_events, check_features
from fedseg.privacy.pseudonyms import PSEUDONYM_CHARS, Pseudonymizer

__all__ = ["KINDS", "DataError", "LoadReport", "load_merchant_table", "read_table"]


def load_merchant_table(
    source: str | Path | pd.DataFrame,
    *,
    pseudonymizer: Pseudonymizer,
    source_name: str | None = None,
    as_of: object = None,
    floor: object = None,
    strict: bool = False,
    user_index: bool = False,
) -> tuple[pd.DataFrame, LoadReport]:
    """Read and clean one merchant table of either kind.

    Returns the clean table and its report. ``user_id`` holds HMAC pseudonyms
    (a categorical column for events, text for features); events come back with
    ``timestamp`` as ``datetime64[ns, UTC]``, ``event`` categorical over view, cart,
    purchase, review, ``item_id`` text, ``price``/``quantity``/``duration_s`` float
    (``price`` may be NaN on views and reviews) and the optional columns present.
    Features come back as ``user_id`` plus float64 columns, one row per customer.

    ``as_of`` and ``floor`` (public run parameters, UTC; ``floor`` defaults to 20 years
    before ``as_of``) drop and count events ``after as_of`` or ``before floor``; features
    tables have no times and ignore them. ``strict=True`` refuses, with one line, a table
    in which any row breaks a rule (an unknown event name, a bad value, ...); rows
    outside the time window and exact duplicates are still dropped and counted.
    ``user_index=True`` returns a features table indexed by ``user_id`` instead (what
    ``set_index("user_id")`` gives, without building the table twice)."""
    window = TimeWindow.of(as_of, floor)
    label, raw = _read(source, source_name)
    if raw.shape[1] == 0 or len(raw) == 0:
        raise DataError(f"{label}: empty table (no {'columns' if raw.shape[1] == 0 else 'rows'})")
    raw = normalize_columns(raw, label)
    columns = raw.columns.tolist()
    identifiers = tuple(c for c in columns if c != "user_id" and is_direct_identifier(c))
    if identifiers:
        raw = raw.drop(columns=list(identifiers))
        columns = raw.columns.tolist()
    kind = detect_kind(columns, label)
    ignored: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    if kind == "events":
        ignored = tuple(c for c in columns if c not in EVENT_COLUMNS)
        typed = type_events(raw.drop(columns=list(ignored)) if ignored else raw, label)
        checks = check_events(typed, window)
        aliases = typed.columns["event"].renamed
    else:
        typed = type_features(raw, label)
        checks = check_features(typed)
    if strict:
        _refuse_dropped_rows(checks, label)
    if typed.block is not None:
        clean = _kept_block(typed, checks, label, pseudonymizer, user_index=user_index)
        n_users = len(clean)
    else:
        clean = _kept(typed.frame, checks, label)
        clean["user_id"], n_users = _pseudonymize_column(clean["user_id"], pseudonymizer, kind)
        if user_index and kind == "features":
            clean = clean.set_index("user_id")
    report = LoadReport(
        source=label,
        kind=kind,
        rows_read=len(raw),
        rows_kept=len(clean),
        dropped=checks.counts(),
        dropped_columns=identifiers,
        ignored_columns=ignored,
        n_users=n_users,
        first_rows=checks.first_rows(),
        window=window.describe() if kind == "events" else "",
        event_aliases=aliases,
    )
    return clean, report


def _read(source: str | Path | pd.DataFrame, source_name: str | None) -> tuple[str, pd.DataFrame]:
    if isinstance(source, pd.DataFrame):
        return source_name or "<dataframe>", source
    return source_name or source_label(source), read_table(source)


def _refuse_dropped_rows(checks: RowChecks, label: str) -> None:
    """Strict mode: one line naming every reason that would drop a row, and its first row."""
    first = checks.first_rows()
    refused = {r: n for r, n in checks.counts().items() if r not in EXPECTED_DROPS}
    if not refused:
        return
    reasons = "; ".join(f"{n:,} {r} (first at row {first[r]})" for r, n in refused.items())
    hint = (
        " — events are view, cart, purchase, review or an alias (docs/merchant.md)"
        if "unknown event" in refused
        else ""
    )
    raise DataError(f"{label}: strict mode: {sum(refused.values()):,} bad rows: {reasons}{hint}")


def _kept(frame: pd.DataFrame, checks: RowChecks, label: str) -> pd.DataFrame:
    keep = _any_kept(checks, label)
    if keep.all():
        return frame.copy()
    return frame.loc[keep].reset_index(drop=True)


def _any_kept(checks: RowChecks, label: str) -> np.ndarray:
    keep = checks.keep
    if not keep.any():
        reasons = ", ".join(f"{n} {r}" for r, n in checks.counts().items())
        raise DataError(f"{label}: no valid rows ({reasons})")
    return keep


def _kept_block(
    typed: TypedTable,
    checks: RowChecks,
    label: str,
    pseudonymizer: Pseudonymizer,
    *,
    user_index: bool,
) -> pd.DataFrame:
    """``_kept`` then ``_pseudonymize_column`` for a float block, building one frame from
    the kept rows: the same table, without the typed frame, its copy and a re-index."""
    keep = _any_kept(checks, label)
    ids = typed.columns["user_id"].values.array
    # check_features keeps one row per customer, so the kept ids are distinct already
    users = pseudonym_text(pd.Index(ids if keep.all() else ids[keep]), pseudonymizer)
    values = typed.block[keep]
    if user_index:
        return pd.DataFrame(values, columns=typed.block_names, index=users.rename("user_id"))
    frame = pd.DataFrame(values, columns=typed.block_names)
    frame.insert(0, "user_id", pd.Series(users, name="user_id"))
    return frame


def _pseudonymize_column(
    user_ids: pd.Series, pseudonymizer: Pseudonymizer, kind: str
) -> tuple[pd.Series, int]:
    """Hash each distinct id once; events keep a compact categorical column. Returns the
    column and the number of distinct customers."""
    codes, uniques = pd.factorize(user_ids)
    distinct = pseudonym_text(uniques, pseudonymizer)
    if kind == "features":
        # one row per customer, the rule: rows already in order
        rows = distinct if len(distinct) == len(codes) else distinct.take(codes)
        return pd.Series(rows, index=user_ids.index, name="user_id"), len(distinct)
    column = pd.Series(
        pd.Categorical.from_codes(codes, categories=distinct),
        index=user_ids.index,
        name="user_id",
    )
    return column, len(distinct)


def pseudonym_text(ids: pd.Index, pseudonymizer: Pseudonymizer) -> pd.Index:
    """The pseudonyms of distinct text ids as a text index, built from Arrow buffers: the ids
    reach the HMAC as bytes and the hex digits leave as one buffer (no str per row)."""
    encoded = pc.cast(pa.array(ids.array, type=pa.large_string()), pa.large_binary())
    text = pseudonymizer.pseudonymize_encoded(encoded.to_pylist())
    ends = np.arange(0, len(text) + 1, PSEUDONYM_CHARS, dtype=np.int64)
    column = pa.LargeStringArray.from_buffers(len(ids), pa.py_buffer(ends), pa.py_buffer(text))
    return pd.Index(text_array(column))
