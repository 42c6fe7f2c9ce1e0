"""Clipped per-cluster sums and counts, and the mechanism whose sensitivity matches the clip.

One customer (one row, all of its records already collapsed into it) sits in one cluster: it
moves that cluster's sum by at most `radius` after L2 clipping and that cluster's count by 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from fedseg.privacy.mechanisms import GaussianMechanism, MechanismError, clip_rows_l2


def cluster_sums_and_counts(
    x: np.ndarray, labels: np.ndarray, *, k: int, radius: float
) -> dict[str, np.ndarray]:
    """{"sums": (k, d) sums of the L2-clipped rows per cluster, "counts": (k,) float counts}."""
    labels = np.asarray(labels)
    clipped = clip_rows_l2(x, radius)
    if labels.shape != (clipped.shape[0],):
        raise MechanismError(f"labels must have shape ({clipped.shape[0]},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise MechanismError(f"labels must lie in [0, {k})")
    sums = np.zeros((k, clipped.shape[1]))
    np.add.at(sums, labels, clipped)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return {"sums": sums, "counts": counts}


def cluster_mechanism(
    *, noise_multiplier: float, radius: float, shares: Mapping[str, float] | None = None
) -> GaussianMechanism:
    """Gaussian mechanism for cluster_sums_and_counts(..., radius=radius) released together."""
    return GaussianMechanism(noise_multiplier, {"sums": radius, "counts": 1.0}, shares)
