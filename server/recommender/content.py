"""Server half of content scoring: per-segment attribute weights from DP counts."""

from __future__ import annotations

import numpy as np


def segment_attribute_weights(
    segment_counts: np.ndarray, attributes: np.ndarray, *, prior: float = 1.0
) -> np.ndarray:
    """w[k, i]: how much more segment k favours attribute value i than everyone does (lift).

    Computed from the released (noisy, suppressed) segment x item counts and the
    public item x attribute matrix only: post-processing, no extra budget.
    `prior` pseudo-counts keep weights finite when a segment's mass is ~0.
    """
    counts = np.clip(np.asarray(segment_counts, dtype=np.float64), 0.0, None)
    if counts.shape[1] != attributes.shape[0]:
        raise ValueError(f"counts cover {counts.shape[1]} items, attributes {attributes.shape[0]}")
    mass = counts @ attributes + prior
    segment_share = mass / mass.sum(axis=1, keepdims=True)
    overall = mass.sum(axis=0)
    return segment_share / (overall / overall.sum())
