"""Server half of per-segment popularity: suppress noise-level counts, rank items."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def suppression_threshold(
    *, noise_multiplier: float, max_items_per_customer: int, n_merchants: int, z_score: float = 3.0
) -> float:
    """Count below which a summed noisy count is indistinguishable from noise.

    The sum of `n_merchants` independent releases carries noise of std
    z * sqrt(L) * sqrt(M); an item nobody bought exceeds `z_score` of those
    stds with probability ~1.3e-3 (z_score=3), so suppressed cells are mostly
    pure noise and shown items are mostly real.
    """
    if n_merchants < 1 or max_items_per_customer < 1 or noise_multiplier < 0:
        raise ValueError("n_merchants and max_items_per_customer must be >= 1, noise >= 0")
    return z_score * noise_multiplier * math.sqrt(max_items_per_customer * n_merchants)


@dataclass(frozen=True)
class SegmentPopularity:
    """Released per-segment item counts after suppression (suppressed cells are 0).

    `overall` is the noisy count summed over segments before suppression: its
    noise averages over segments, so it still ranks items whose per-segment
    cells were suppressed.
    """

    counts: np.ndarray
    overall: np.ndarray

    def scores(self, segments: np.ndarray) -> np.ndarray:
        """Ranking scores for customers of `segments`: segment count, ties by overall count."""
        scale = 1.0 + np.abs(self.overall).max() if self.overall.size else 1.0
        return self.counts[np.asarray(segments)] + 1e-3 * self.overall / scale

    def top_n(self, segment: int, n: int = 10) -> np.ndarray:
        """The segment's n most popular items, best first."""
        return np.argsort(-self.scores(np.array([segment]))[0], kind="stable")[:n]


def aggregate_segment_popularity(
    summed: dict[str, np.ndarray], *, threshold: float
) -> SegmentPopularity:
    """Summed client counts -> suppressed per-segment popularity (post-processing only)."""
    if "counts" not in summed:
        raise ValueError("aggregate has no 'counts' part")
    counts = np.asarray(summed["counts"], dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"'counts' must be (segments x items), got shape {counts.shape}")
    if not np.all(np.isfinite(counts)):
        raise ValueError("'counts' contains NaN or inf")
    return SegmentPopularity(np.where(counts >= threshold, counts, 0.0), counts.sum(axis=0))
