"""The message codec both apps use: a payload dict ↔ a Flower ``RecordDict``.

Arrays travel packed (privacy/wire.py), one ``bytes`` value each, in one ConfigRecord
``arrays``; scalars, strings and lists in one ConfigRecord ``config``. Anything else in a
received message is refused, on both sides alike. Every message is four Flower objects
(the message, its RecordDict, two records) whatever it carries, where Flower's own
``ArrayRecord`` adds two per array (the ``Array`` and its chunk), each one more request
between a deployment's processes. This is the one module below the apps that imports
Flower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from fedseg.privacy.wire import pack, unpack
from flwr.app import ConfigRecord, RecordDict

RECORDS = ("arrays", "config")


def to_records(payload: Mapping[str, Any]) -> RecordDict:
    """Arrays packed into the ``arrays`` record, everything else into ``config``."""
    arrays, config = {}, {}
    for key, value in payload.items():
        if isinstance(value, np.ndarray):
            arrays[key] = pack(value)
        else:
            config[key] = value
    return RecordDict({"arrays": ConfigRecord(arrays), "config": ConfigRecord(config)})


def from_records(records: RecordDict) -> dict[str, Any]:
    """The payload back; ValueError on a record or value this codec never writes."""
    payload: dict[str, Any] = {}
    for name, record in records.items():
        if not isinstance(record, ConfigRecord) or name not in RECORDS:
            raise ValueError(f"unexpected record {name!r}")
        if name == "arrays":
            payload.update({key: _decoded(blob) for key, blob in record.items()})
        else:
            payload.update(dict(record))
    return payload


_RECENT_BLOBS = 256  # decoded arrays remembered (a request's few arrays, many times over)
_REMEMBERED_BYTES = 1 << 16  # larger arrays are decoded every time (memory stays small)
_recent: dict[bytes, np.ndarray] = {}


def _decoded(blob: bytes) -> np.ndarray:
    """``unpack(blob)``, a writable copy of its own. A server sends the same request to
    every merchant, and an in-process simulation delivers each of them the same bytes: the
    header is parsed and checked once, later equal bytes get a copy of that array (the same
    values, dtype and shape; a bytes object hashes once). Anything ``unpack`` refuses is
    refused every time."""
    known = _recent.get(blob) if isinstance(blob, bytes) else None
    if known is not None:
        return known.copy()
    array = unpack(blob)
    if len(blob) <= _REMEMBERED_BYTES:
        while len(_recent) >= _RECENT_BLOBS:  # the oldest first
            _recent.pop(next(iter(_recent), None), None)
        _recent[blob] = array.copy()
    return array


def array_bytes(records: RecordDict) -> int:
    """Bytes of the arrays of a message as they travel, read before decoding any of them."""
    arrays = records.get("arrays")
    if not isinstance(arrays, ConfigRecord):
        return 0
    return sum(len(blob) for blob in arrays.values() if isinstance(blob, bytes))
