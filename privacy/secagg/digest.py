"""Canonical SHA-256 of a request payload, the ``request digest`` every merchant signs.

Two merchants that received the same request get the same digest; a server that sends
one merchant a tailored request (Pasquini et al. 2022, model inconsistency) makes that
merchant sign a different digest, which its neighbours and the consistency round detect.

The encoding is injective: every value is framed with a type tag and its length; keys of
a mapping are sorted. Numpy scalars hash as the Python number they hold, so a transport
that turns ``np.float64(2.0)`` into ``2.0`` does not change the digest, while ``2`` and
``2.0`` (or ``True`` and ``1``) stay distinct.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DIGEST_BYTES = 32
_PREFIX = b"fedseg-request-digest/v1"


def request_digest(payload: Mapping[str, Any]) -> bytes:
    """32-byte digest of a mapping of str -> (array, number, str, bytes, None, list, mapping)."""
    h = hashlib.sha256(_PREFIX)
    _feed(h, payload)
    return h.digest()


def _frame(h, tag: bytes, body: bytes) -> None:
    h.update(tag + len(body).to_bytes(8, "big") + body)


def _feed(h, value: Any) -> None:
    if isinstance(value, np.generic) and not isinstance(value, np.void):
        value = value.item()
    if value is None:
        _frame(h, b"N", b"")
    elif isinstance(value, bool):
        _frame(h, b"B", b"\x01" if value else b"\x00")
    elif isinstance(value, int):
        _frame(h, b"I", value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True))
    elif isinstance(value, float):
        _frame(h, b"F", struct.pack(">d", value))
    elif isinstance(value, str):
        _frame(h, b"S", value.encode())
    elif isinstance(value, bytes | bytearray):
        _frame(h, b"Y", bytes(value))
    elif isinstance(value, np.ndarray):
        _feed_array(h, value)
    elif isinstance(value, Mapping):
        keys = sorted(value)
        if not all(isinstance(k, str) for k in keys):
            raise TypeError("request digest: mapping keys must be str")
        _frame(h, b"M", len(keys).to_bytes(8, "big"))
        for key in keys:
            _frame(h, b"K", key.encode())
            _feed(h, value[key])
    elif isinstance(value, Sequence):
        _frame(h, b"L", len(value).to_bytes(8, "big"))
        for item in value:
            _feed(h, item)
    else:
        raise TypeError(f"request digest: cannot hash a {type(value).__name__}")


def _feed_array(h, array: np.ndarray) -> None:
    if array.dtype.kind not in "biuf":
        raise TypeError(f"request digest: cannot hash an array of dtype {array.dtype}")
    canonical = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    header = f"{canonical.dtype.str}:{','.join(map(str, canonical.shape))}".encode()
    _frame(h, b"A", header)
    _frame(h, b"D", canonical.tobytes())
