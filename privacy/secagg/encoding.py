"""Fixed-point encoding of named float arrays into uint64 words mod 2^64.

A value x becomes round(x * 2^f) in two's complement; sums wrap mod 2^64 and decode
exactly as long as |sum| < 2^63, which :class:`SecAggConfig` guarantees. Values outside
``max_abs_value`` are an error naming the field, never clipped.
"""

from __future__ import annotations

import math

import numpy as np
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.errors import EncodingRangeError


def encode(values: dict[str, np.ndarray], config: SecAggConfig) -> np.ndarray:
    """Flatten ``values`` in ``config.vector_spec`` order into a uint64 vector."""
    expected = {name for name, _ in config.vector_spec}
    if set(values) != expected:
        raise EncodingRangeError(
            f"input fields {sorted(values)} differ from vector_spec fields {sorted(expected)}"
        )
    parts = [_encode_field(name, shape, values[name], config) for name, shape in config.vector_spec]
    return np.concatenate(parts)


def _encode_field(name: str, shape: tuple[int, ...], raw, config: SecAggConfig) -> np.ndarray:
    array = np.asarray(raw, dtype=np.float64)
    if array.shape != shape:
        raise EncodingRangeError(f"field {name!r} has shape {array.shape}, expected {shape}")
    flat = array.ravel()
    bad = ~np.isfinite(flat) | (np.abs(flat) > config.max_abs_value)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise EncodingRangeError(
            f"field {name!r} value {flat[index]!r} at flat index {index} is outside "
            f"[-{config.max_abs_value}, {config.max_abs_value}] or not finite"
        )
    return np.rint(flat * 2.0**config.scale_bits).astype(np.int64).view(np.uint64)


def decode_sum(total: np.ndarray, config: SecAggConfig) -> dict[str, np.ndarray]:
    """Turn a uint64 sum of encodings back into the named float arrays."""
    signed = np.asarray(total, dtype=np.uint64).view(np.int64).astype(np.float64)
    scaled = signed / 2.0**config.scale_bits
    out, start = {}, 0
    for name, shape in config.vector_spec:
        size = math.prod(shape)
        out[name] = scaled[start : start + size].reshape(shape)
        start += size
    return out
