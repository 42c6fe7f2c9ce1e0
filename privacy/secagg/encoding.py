"""Fixed-point encoding of named float arrays into uint64 words mod 2^64, and its inverse.

A value x is clipped into [-max_abs_value, max_abs_value] (NaN becomes 0) and becomes
round(x * 2^f) in two's complement. Clipping a DP release is post-processing, and unlike
an error naming the offending value it releases nothing: the number of clipped entries
stays with the merchant. Every honest input is then at most ``max_word`` in magnitude, so
the sum of s inputs is at most s * max_word and the ring (2^64) cannot wrap; the server
refuses a sum outside that range instead of decoding it.
"""

from __future__ import annotations

import math

import numpy as np
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.errors import EncodingShapeError, SecAggAborted


def encode(values: dict[str, np.ndarray], config: SecAggConfig) -> tuple[np.ndarray, int]:
    """(uint64 words in ``config.vector_spec`` order, number of entries clipped)."""
    expected = [name for name, _ in config.vector_spec]
    if sorted(values) != sorted(expected):
        raise EncodingShapeError(f"input fields {sorted(values)} differ from {sorted(expected)}")
    parts, clipped = [], 0
    for name, shape in config.vector_spec:
        array = np.asarray(values[name], dtype=np.float64)
        if array.shape != shape:
            raise EncodingShapeError(f"field {name!r} has shape {array.shape}, expected {shape}")
        flat = array.ravel()
        outside = ~(np.abs(flat) <= config.max_abs_value)  # also true for NaN and inf
        clipped += int(outside.sum())
        bounded = np.clip(np.nan_to_num(flat, nan=0.0), -config.max_abs_value, config.max_abs_value)
        parts.append(np.rint(bounded * 2.0**config.scale_bits).astype(np.int64).view(np.uint64))
    return np.concatenate(parts), clipped


def decode_sum(total: np.ndarray, config: SecAggConfig, contributors: int) -> dict[str, np.ndarray]:
    """The named float arrays of a sum of ``contributors`` encodings.

    Raises :class:`SecAggAborted` when any entry exceeds what that many honest merchants
    can produce: a merchant that added junk to its masked words (e.g. 2^61) is caught
    here instead of being decoded into a huge published statistic.
    """
    signed = np.asarray(total, dtype=np.uint64).view(np.int64)
    limit = np.int64(contributors * config.max_word)  # < 2^59: exact in int64
    if np.any((signed > limit) | (signed < -limit)):
        raise SecAggAborted(
            f"the unmasked sum is outside the range {contributors} merchants can produce "
            f"(|value| <= {contributors} * max_abs_value); a merchant sent a malformed input"
        )
    scaled = signed.astype(np.float64) / 2.0**config.scale_bits
    out, start = {}, 0
    for name, shape in config.vector_spec:
        size = math.prod(shape)
        out[name] = scaled[start : start + size].reshape(shape)
        start += size
    return out
