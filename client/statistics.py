"""Local statistics a merchant computes on its own customers (before any noise).

Each customer contributes one vector, so a customer changes a feature histogram by one
count per feature and a cluster-statistics release by one vector in one cluster.
"""

from __future__ import annotations

import numpy as np
from fedseg.privacy.published.segments import nearest_centre
from fedseg.privacy.scaling import to_unit


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


# -- statistics of the accuracy work (issue 16); raw values only, the node adds noise ------


def clipped_moments(u: np.ndarray, *, gram: bool) -> dict[str, np.ndarray]:
    """Count, sum and squares of rows already clipped to the public box [-1, 1]^d, and with
    ``gram`` the full Σ u uᵀ too (for a DP projection).

    One customer adds 1 to the count, u (‖u‖ ≤ √d) to the sum, u² (‖u²‖ ≤ √d) to the
    squares and u uᵀ (Frobenius norm ‖u‖² ≤ d) to the Gram matrix.
    """
    out = {"count": np.array([float(len(u))]), "sum": u.sum(axis=0),
           "square": np.einsum("ij,ij->j", u, u)}  # fmt: skip
    if gram:
        out["second"] = u.T @ u
    return out


def displacement_statistics(
    z: np.ndarray, centres: np.ndarray, *, radius: float, distance_edges: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-cluster sums of displacements clip(z − c, radius), counts, and a distance histogram.

    Each customer joins its nearest centre, adds its displacement from that centre clipped
    to ``radius`` (L2) to the cluster's sum, 1 to its count and 1 to one bin of the
    histogram of distances to its centre (bins ``distance_edges``; outside them, the end
    bins). The server's new centre is c + sum / count.
    """
    k, d = centres.shape
    labels = nearest_centre(z, centres)
    offsets = z - centres[labels]
    distance = np.linalg.norm(offsets, axis=1)
    shrink = np.ones_like(distance)
    far = distance > radius
    shrink[far] = radius / distance[far]
    moved = offsets * shrink[:, None]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack(
        [np.bincount(labels, weights=moved[:, j], minlength=k) for j in range(d)], axis=1
    )
    inner = distance_edges[1:-1]
    hist = np.bincount(np.searchsorted(inner, distance, side="right"), minlength=len(inner) + 1)
    return {"sums": sums.reshape(k, d), "counts": counts, "distances": hist.astype(np.float64)}


def segment_value_sums(
    x: np.ndarray, labels: np.ndarray, k: int, *, lower: np.ndarray, upper: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-segment sums of each feature in original units, mapped to [-1, 1] by the public
    bounds (v = (clip(x) − centre) / half-width), and counts: one customer adds v
    (‖v‖ ≤ √d) to its segment's sums and 1 to its count. ``labels`` come from the
    published model (its own assignment of each customer)."""
    v = to_unit(x, lower, upper)
    sums = np.stack(
        [np.bincount(labels, weights=v[:, j], minlength=k) for j in range(v.shape[1])], axis=1
    )
    return {
        "sums": sums.reshape(k, v.shape[1]),
        "counts": np.bincount(labels, minlength=k).astype(np.float64),
    }
