"""Vectorized sampling helpers for the synthetic generator."""

from __future__ import annotations

import numpy as np


def cumulative_rows(weights: np.ndarray) -> np.ndarray:
    """Row-normalized cumulative distributions of a 2-D weight table (last column exactly 1)."""
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or (weights < 0).any() or (weights.sum(axis=1) <= 0).any():
        raise ValueError("weights must be a 2-D table of non-negative rows with positive sums")
    cdf = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    cdf[:, -1] = 1.0
    return cdf


def sample_from_rows(cdf: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one column index per entry of `rows`, from that row's distribution in `cdf`.

    All draws in one `searchsorted`: row r's cdf is shifted to [r, r + 1], so the flattened
    table is monotone and a draw r + u lands inside row r.
    """
    n_rows, width = cdf.shape
    shifted = (cdf + np.arange(n_rows)[:, None]).ravel()
    rows = np.asarray(rows, dtype=np.int64)
    position = np.searchsorted(shifted, rows + rng.random(rows.size), side="right")
    return np.minimum(position - rows * width, width - 1)
