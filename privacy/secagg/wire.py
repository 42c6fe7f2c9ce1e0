"""Flat form of secure-aggregation messages, for transports that carry flat records.

Stage messages hold ints, bytes, arrays and one level of ``{node_id: bytes}`` maps;
a map becomes two entries, ``<key>#ids`` (uint64 array) and ``<key>#blobs`` (list of
bytes). An int beyond the signed 64-bit range a record can hold (Flower's node ids are
unsigned) travels as ``<key>#u64``, a one-element uint64 array.
``unflatten(flatten(m)) == m`` for every stage message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

IDS, BLOBS, U64 = "#ids", "#blobs", "#u64"


def flatten(message: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in message.items():
        if isinstance(value, dict):
            flat[key + IDS] = np.array(list(value), dtype=np.uint64)
            flat[key + BLOBS] = [bytes(v) for v in value.values()]
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 2**63:
            flat[key + U64] = np.array([value], dtype=np.uint64)
        else:
            flat[key] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {}
    for key, value in flat.items():
        if key.endswith(BLOBS):
            continue
        if key.endswith(U64):
            message[key.removesuffix(U64)] = int(np.asarray(value).ravel()[0])
        elif key.endswith(IDS):
            base = key.removesuffix(IDS)
            blobs = flat.get(base + BLOBS, [])
            ids = [int(i) for i in np.asarray(value).ravel()]
            message[base] = dict(zip(ids, blobs, strict=False))
        else:
            message[key] = value
    return message
