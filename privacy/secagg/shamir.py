"""Shamir secret sharing of 32-byte secrets, vectorized with numpy.

A secret is split into nine 30-bit chunks, each shared with its own random polynomial of
degree t-1 over GF(p), p = 2^31 - 1 (products of two field elements fit in int64, so
Horner evaluation runs on whole arrays). Any t shares rebuild the secret; fewer reveal
nothing about it (information-theoretically, chunk by chunk).
"""

from __future__ import annotations

import os

import numpy as np

PRIME = 2**31 - 1
CHUNK_BITS = 30
CHUNKS = 9  # 9 * 30 = 270 >= 256 bits
SHARE_BYTES = 4 * CHUNKS


def secret_to_chunks(secret: bytes) -> np.ndarray:
    """32-byte secret -> int64 array of nine 30-bit chunks (least significant first)."""
    value = int.from_bytes(secret, "little")
    mask = (1 << CHUNK_BITS) - 1
    return np.array([(value >> (CHUNK_BITS * i)) & mask for i in range(CHUNKS)], dtype=np.int64)


def chunks_to_secret(chunks: np.ndarray) -> bytes | None:
    """Inverse of :func:`secret_to_chunks`; ``None`` if the chunks are not a 32-byte secret."""
    value = 0
    for i, chunk in enumerate(int(c) for c in chunks):
        if chunk >> CHUNK_BITS:
            return None
        value |= chunk << (CHUNK_BITS * i)
    if value >> 256:
        return None
    return value.to_bytes(32, "little")


def uniform_field_elements(shape: tuple[int, ...]) -> np.ndarray:
    """Uniform elements of GF(p) from the OS CSPRNG (31-bit draws, p itself rejected)."""
    size = int(np.prod(shape))
    draws = np.frombuffer(os.urandom(4 * size), dtype=np.uint32) & np.uint32(PRIME)
    draws = draws.astype(np.int64)
    while (rejected := np.flatnonzero(draws == PRIME)).size:
        fresh = np.frombuffer(os.urandom(4 * rejected.size), dtype=np.uint32) & np.uint32(PRIME)
        draws[rejected] = fresh.astype(np.int64)
    return draws.reshape(shape)


def share(secrets: np.ndarray, xs: np.ndarray, threshold: int) -> np.ndarray:
    """Shares of chunk vector ``secrets`` (m,) at points ``xs`` (k,): int64 array (k, m)."""
    coefficients = uniform_field_elements((threshold - 1, secrets.size))
    x = np.asarray(xs, dtype=np.int64)[:, None]
    acc = np.zeros((x.shape[0], secrets.size), dtype=np.int64)
    for row in coefficients[::-1]:
        acc = (acc * x + row) % PRIME  # < 2^62 + 2^31: no int64 overflow
    return (acc * x + secrets) % PRIME


def lagrange_at_zero(xs: tuple[int, ...]) -> np.ndarray:
    """Coefficients l_j = prod_{m != j} x_m / (x_m - x_j) over GF(p), so f(0) = sum l_j f(x_j)."""
    x = np.asarray(xs, dtype=np.int64) % PRIME
    off_diagonal = ~np.eye(x.size, dtype=bool)
    numerators = np.where(off_diagonal, x[None, :], 1)
    denominators = np.where(off_diagonal, (x[None, :] - x[:, None]) % PRIME, 1)
    inverse = _power(_row_products(denominators), PRIME - 2)  # Fermat: a^(p-2) = 1/a
    return _row_products(numerators) * inverse % PRIME


def _row_products(matrix: np.ndarray) -> np.ndarray:
    """Product of each row mod p, by pairwise halving (log-depth, no overflow)."""
    while matrix.shape[1] > 1:
        if matrix.shape[1] % 2:
            matrix = np.concatenate([matrix, np.ones((matrix.shape[0], 1), np.int64)], axis=1)
        matrix = matrix[:, 0::2] * matrix[:, 1::2] % PRIME
    return matrix[:, 0]


def _power(base: np.ndarray, exponent: int) -> np.ndarray:
    """Elementwise base**exponent mod p by square-and-multiply."""
    result = np.ones_like(base)
    while exponent:
        if exponent & 1:
            result = result * base % PRIME
        base = base * base % PRIME
        exponent >>= 1
    return result


def reconstruct(xs: tuple[int, ...], ys: np.ndarray) -> np.ndarray:
    """Chunk vector f(0) from shares ``ys`` (t, m) at distinct points ``xs``."""
    weights = lagrange_at_zero(xs)[:, None]
    return ((weights * ys) % PRIME).sum(axis=0) % PRIME


def share_to_bytes(share_row: np.ndarray) -> bytes:
    """One share (CHUNKS field elements) as 36 little-endian bytes."""
    return share_row.astype("<u4").tobytes()


def share_from_bytes(blob: bytes) -> np.ndarray | None:
    """Inverse of :func:`share_to_bytes`; ``None`` when malformed."""
    if not isinstance(blob, bytes | bytearray) or len(blob) != SHARE_BYTES:
        return None
    row = np.frombuffer(bytes(blob), dtype="<u4").astype(np.int64)
    return None if (row >= PRIME).any() else row
