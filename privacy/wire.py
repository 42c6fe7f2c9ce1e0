"""Numeric arrays as raw bytes for the wire: dtype and shape travel beside the data.

Flower's default array encoding is a ``.npy`` file per array, whose header numpy parses
with a Python literal evaluator; at thousands of small messages per round that parsing
dominated decoding. Both apps send each array as one ``bytes`` value instead (``pack``: a
two-byte header length, an ASCII ``dtype:shape`` header, the C-order data), and decoding
refuses anything that is not a plain number array of exactly its size. One value, not a
Flower ``Array``: each ``Array`` and each of its chunks is an object a deployment uploads
and downloads with a request of its own (BENCHMARKS.md, issue 20).
"""

from __future__ import annotations

import math

import numpy as np

NUMERIC_KINDS = "fiub"  # float, signed, unsigned, bool: never object or string arrays
_HEADER_LENGTH_BYTES = 2


def to_raw(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """(dtype string, shape, C-order bytes) of a numeric array."""
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"cannot send an array of dtype {array.dtype}")
    return array.dtype.str, tuple(int(n) for n in array.shape), array.tobytes()


def from_raw(dtype: str, shape: tuple[int, ...], data: bytes | memoryview) -> np.ndarray:
    """The array back (a writable copy); ValueError if dtype, shape and size disagree."""
    try:
        kind = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"unknown dtype {dtype!r}") from exc
    if kind.kind not in NUMERIC_KINDS:
        raise ValueError(f"dtype {dtype!r} is not numeric")
    if any(n < 0 for n in shape) or kind.itemsize * math.prod(shape) != len(data):
        raise ValueError(f"{len(data)} bytes do not hold a {dtype} array of shape {tuple(shape)}")
    return np.frombuffer(data, dtype=kind).reshape(shape).copy()


def pack(array: np.ndarray) -> bytes:
    """One array as one bytes value: header length (2 bytes), ``dtype:d0,d1,...``, data."""
    dtype, shape, data = to_raw(array)
    header = f"{dtype}:{','.join(map(str, shape))}".encode("ascii")
    return len(header).to_bytes(_HEADER_LENGTH_BYTES, "little") + header + data


def unpack(blob: bytes) -> np.ndarray:
    """The array ``pack`` wrote (a writable copy); ValueError on anything else."""
    if not isinstance(blob, bytes) or len(blob) < _HEADER_LENGTH_BYTES:
        raise ValueError("not a packed array")
    end = _HEADER_LENGTH_BYTES + int.from_bytes(blob[:_HEADER_LENGTH_BYTES], "little")
    try:
        dtype, colon, dims = blob[_HEADER_LENGTH_BYTES:end].decode("ascii").partition(":")
        shape = tuple(int(n) for n in dims.split(",")) if dims else ()
    except (UnicodeDecodeError, ValueError):
        raise ValueError("malformed packed array header") from None
    if not colon or len(blob) < end:
        raise ValueError("malformed packed array header")
    return from_raw(dtype, shape, memoryview(blob)[end:])
