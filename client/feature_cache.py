"""A merchant's prepared features, kept in its own state directory between processes.

Flower starts a new ClientApp process for each message of a deployment; without this
cache each one would read, validate, pseudonymize and featurize the merchant's whole table
again. ``load_or_build`` stores the result of that work (the feature matrix, the
pseudonyms of its rows, the feature schema applied and the load report's summary) under
``<state-dir>/feature-cache/`` and reloads it in milliseconds when nothing it was built
from has changed. The key covers everything the features depend on:

- the data file: size, modification time and a SHA-256 of its bytes (all of them up to
  ``FULL_HASH_BYTES``, else the first and last ``EDGE_BYTES``);
- the run's public as-of (resolved: an empty as-of is the next UTC midnight) and strict mode;
- the operator's feature schema sent with ``describe`` (its digest; none: the table's own);
- the pseudonym key, as a keyed fingerprint that reveals nothing of the key;
- the code that turns a table into features (the loading and feature modules' bytes), so
  a new schema or rule never reads an old entry.

The cache is the merchant's own, like the ledger beside it: files readable by the owner
only, never sent anywhere (nothing in it enters a message; the node answers from the same
arrays either way). A missing, stale or unreadable entry is rebuilt; only one entry is kept.
SQL sources other than a SQLite file are not cached (no cheap fingerprint of a remote table).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from fedseg.client.sql_sources import restore_url
from fedseg.privacy.protocol import run
from fedseg.privacy.protocol.schema import FeatureSchema, SchemaError, schema_from_toml
from fedseg.privacy.pseudonyms import Pseudonymizer, load_key_file

if TYPE_CHECKING:
    import pandas as pd
    from fedseg.client.load_report import LoadReport
    from fedseg.client.merchant import MerchantSettings

CACHE_DIR = "feature-cache"
FORMAT = 2
FULL_HASH_BYTES = 64 << 20
EDGE_BYTES = 4 << 20
# What turns a table into features: a change to any of them invalidates every entry.
_BUILDERS = (
    "fedseg.client.customer_events", "fedseg.client.features", "fedseg.client.loading",
    "fedseg.client.parsing", "fedseg.client.schema", "fedseg.client.sql_sources",
    "fedseg.client.tables", "fedseg.client.time_window", "fedseg.client.typed_tables",
    "fedseg.client.validation", "fedseg.privacy.protocol.builtin",
    "fedseg.privacy.protocol.schema", "fedseg.privacy.pseudonyms",
)  # fmt: skip
log = logging.getLogger("fedseg.merchant")

Build = Callable[[], "tuple[pd.DataFrame, FeatureSchema, LoadReport]"]


@dataclass(frozen=True)
class PreparedFeatures:
    """One merchant's customers, ready for its node: rows in the same order throughout."""

    matrix: np.ndarray  # float64 (customers, features), columns in the schema's order
    customer_ids: Sequence[str]  # the rows' pseudonyms
    schema: FeatureSchema  # the one applied (the run's, or the table's own when it sent none)
    summary: str  # the load report's summary (the merchant's own log)
    from_cache: bool


def load_or_build(
    settings: MerchantSettings, schema: FeatureSchema | None, build: Build
) -> PreparedFeatures:
    """The prepared features of ``settings``' data under ``schema``: from the cache when its
    key matches, else from ``build()`` (``customer_features``' triple), stored for the next
    process."""
    key = cache_key(settings, schema) if settings.state_dir else ""
    folder = Path(settings.state_dir) / CACHE_DIR if key else None
    if folder is not None and (cached := _read(folder, key)) is not None:
        try:  # the entry's time says when it was last used (cached_features' ``since``)
            os.utime(folder / "meta.json")
        except OSError:
            pass
        return cached
    features, applied, report = build()
    names = list(applied.names)
    ordered = features if list(features.columns) == names else features[names]
    prepared = PreparedFeatures(
        matrix=np.ascontiguousarray(ordered.to_numpy(dtype=np.float64)),
        customer_ids=RowIds(features.index),
        schema=applied,
        summary=report.summary(),
        from_cache=False,
    )
    if folder is not None:
        try:
            _write(folder, key, prepared)
        except OSError as exc:  # a full disk costs speed, never the run
            log.warning("feature cache: not written (%s)", exc)
    return prepared


def cached_features(
    settings: MerchantSettings, schema: FeatureSchema | None, *, since: float = 0.0
) -> PreparedFeatures | None:
    """The entry ``settings``' data has under ``schema`` in its state directory, if one
    was built from the same file, key, schema and code and built or used at or after
    ``since`` (a time.time(); None otherwise)."""
    key = cache_key(settings, schema) if settings.state_dir else ""
    folder = Path(settings.state_dir) / CACHE_DIR
    try:
        if not key or (folder / "meta.json").stat().st_mtime < since:
            return None
    except OSError:
        return None
    return _read(folder, key)


def cache_key(settings: MerchantSettings, schema: FeatureSchema | None) -> str:
    """Hex digest of everything the prepared features depend on ("" = not cacheable)."""
    source = _source_fingerprint(settings.data_path)
    if source is None:
        return ""
    if settings.key_file:
        pseudonymizer = Pseudonymizer(load_key_file(settings.key_file))
    else:
        pseudonymizer = Pseudonymizer.for_simulation(settings.merchant_id, settings.simulation_seed)
    parts = {
        "format": FORMAT,
        "source": source,
        "as_of": run.as_of(settings.as_of).isoformat(),
        "strict": settings.strict,
        "schema": schema.digest() if schema is not None else None,
        "key": pseudonymizer.fingerprint(),
        "code": _code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _source_fingerprint(data_path: str) -> dict | None:
    url = restore_url(data_path)
    if url is not None:
        if not url.startswith("sqlite:///"):
            return None
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        extra = {"url": url}
    else:
        path, extra = Path(data_path), {}
    try:
        stat = path.stat()
        digest = _content_hash(path, stat.st_size)
    except OSError:
        return None  # build() reports the problem in its own words
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": digest, **extra}  # fmt: skip


def _content_hash(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= FULL_HASH_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


_code_digest: list[str] = []


def _code_fingerprint() -> str:
    if not _code_digest:
        digest = hashlib.sha256()
        for name in _BUILDERS:
            digest.update(
                name.encode() + b"\0" + Path(importlib.import_module(name).__file__).read_bytes()
            )
        _code_digest.append(digest.hexdigest())
    return _code_digest[0]


def _read(folder: Path, key: str) -> PreparedFeatures | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") != key:
            return None
        matrix = np.load(folder / f"{key[:16]}.features.npy", allow_pickle=False)
        ids = np.load(folder / f"{key[:16]}.ids.npy", allow_pickle=False, mmap_mode="r")
        schema = schema_from_toml(meta["schema"], source=str(meta["schema_source"]))
    except (OSError, ValueError, KeyError, TypeError, SchemaError):
        return None
    if (matrix.dtype != np.float64 or matrix.ndim != 2 or matrix.shape != (len(ids), schema.dim)
            or ids.dtype.kind != "S" or not np.isfinite(matrix).all()):  # fmt: skip
        log.warning("feature cache: an inconsistent entry was ignored and will be rebuilt")
        return None
    return PreparedFeatures(matrix, Pseudonyms(ids), schema, str(meta["summary"]), True)


def _write(folder: Path, key: str, prepared: PreparedFeatures) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stem = key[:16]
    ids = _id_bytes(prepared.customer_ids)
    _atomic(folder / f"{stem}.features.npy", lambda f: np.save(f, prepared.matrix))
    _atomic(folder / f"{stem}.ids.npy", lambda f: np.save(f, ids))
    meta = {"key": key, "schema": prepared.schema.to_toml(),
            "schema_source": prepared.schema.source, "summary": prepared.summary}  # fmt: skip
    _atomic(folder / "meta.json", lambda f: f.write(json.dumps(meta).encode()))
    for old in folder.glob("*.npy"):  # one entry per merchant: drop the previous one
        if not old.name.startswith(stem + "."):
            old.unlink(missing_ok=True)


def _id_bytes(customer_ids: Sequence[str]) -> np.ndarray:
    """The ids as one fixed-width bytes array: straight from the Arrow text buffer when
    they are a table's pseudonyms (all one width), else one encode per id."""
    if isinstance(customer_ids, RowIds):
        raw = customer_ids.fixed_width_bytes()
        if raw is not None:
            return raw
    listed = list(customer_ids)
    return np.array(listed, dtype="S") if listed else np.zeros(0, "S64")


def _atomic(path: Path, write: Callable[[Any], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0o600
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Pseudonyms(Sequence[str]):
    """The rows' pseudonyms, decoded from the cached bytes only when asked for (the
    segmentation never reads them; the recommender does, once)."""

    def __init__(self, raw: np.ndarray) -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [b.decode() for b in self._raw[index].tolist()]
        return self._raw[index].decode()

    def __iter__(self) -> Iterator[str]:
        return (b.decode() for b in self._raw.tolist())


class RowIds(Sequence[str]):
    """A feature table's index as text, listed once, on first use (``tolist`` is one
    C-level pass; iterating an Arrow-backed index reads item by item, 10x slower)."""

    def __init__(self, index) -> None:
        self._index, self._listed = index, None

    def fixed_width_bytes(self) -> np.ndarray | None:
        """The ids as an ``S`` array read off the index's Arrow buffers if every id has the
        same (non-zero) width, e.g. pseudonyms; None otherwise."""
        try:
            text = pa.array(self._index.array)
        except (pa.ArrowException, TypeError, ValueError):
            return None
        if not pa.types.is_large_string(text.type) or text.null_count or not len(text):
            return None
        ends = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset :][: len(text) + 1]
        width = int(ends[1] - ends[0])
        if width <= 0 or np.any(np.diff(ends) != width):
            return None
        data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[ends[0] : ends[-1]]
        return data.view(f"S{width}").copy()

    def _list(self) -> list[str]:
        if self._listed is None:
            self._listed = [str(u) for u in self._index.tolist()]
        return self._listed

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index):  # type: ignore[override]
        return self._list()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._list())
