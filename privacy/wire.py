"""Numeric arrays as raw bytes for the wire: dtype and shape travel beside the data.

Flower's default array encoding is a ``.npy`` file per array, whose header numpy parses
with a Python literal evaluator; at thousands of small messages per round that parsing
dominated decoding. Both apps send arrays in this raw form instead (``stype`` RAW_STYPE),
and decoding refuses anything that is not a plain number array of exactly its size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

RAW_STYPE = "fedseg.raw"
NUMERIC_KINDS = "fiub"  # float, signed, unsigned, bool: never object or string arrays


def to_raw(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """(dtype string, shape, C-order bytes) of a numeric array."""
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"cannot send an array of dtype {array.dtype}")
    return array.dtype.str, tuple(int(n) for n in array.shape), array.tobytes()


def from_raw(dtype: str, shape: tuple[int, ...], data: bytes) -> np.ndarray:
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


def array_fields(array: np.ndarray) -> tuple[str, tuple[int, ...], str, bytes]:
    """(dtype, shape, stype, data): the arguments of a Flower ``Array`` holding ``array`` raw."""
    dtype, shape, data = to_raw(array)
    return dtype, shape, RAW_STYPE, data


def decode_array(array: Any) -> np.ndarray:
    """A received Flower ``Array``: raw (both apps send these) or a standard ``.npy`` one.

    Duck-typed (``stype``, ``dtype``, ``shape``, ``data``, ``numpy()``) so this module
    never imports Flower.
    """
    if array.stype == RAW_STYPE:
        return from_raw(array.dtype, tuple(array.shape), array.data)
    return array.numpy()
