"""Local statistics a merchant computes on its own customers (before any noise).

Each customer contributes one vector, so a customer changes a feature histogram by one
count per feature and a cluster-statistics release by one vector in one cluster.
"""

from __future__ import annotations

import numpy as np
from fedseg.privacy.published.segments import nearest_centre


def feature_histograms(x_model: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin, one row per feature; values outside the edges land in the end bins.

    ``x_model`` is (n, d) in model space (log1p applied, unclipped); ``edges`` is
    (d, B + 1), increasing along each row.
    """
    n_features, n_edges = edges.shape
    counts = np.zeros((n_features, n_edges - 1))
    for j in range(n_features):
        bins = np.searchsorted(edges[j, 1:-1], x_model[:, j], side="right")
        counts[j] = np.bincount(bins, minlength=n_edges - 1)
    return counts


def cluster_statistics(z: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (k, d) and counts (k,) of the rows of ``z`` assigned to ``centres``."""
    k, d = centres.shape
    labels = nearest_centre(z, centres)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(labels, weights=z[:, j], minlength=k) for j in range(d)], axis=1)
    return sums.reshape(k, d), counts
