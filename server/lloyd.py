"""Radius-constrained DP Lloyd steps: post-processing of displacement statistics.

Release ``cluster_displacements``: every customer joins its nearest public centre and adds
its displacement from it clipped to the public radius r (sums: L2 sensitivity r), 1 to the
cluster's count (sensitivity 1) and 1 to one bin of a public histogram of distances to its
centre (sensitivity 1). The new centre is c + sum/count. Clipping around the customer's own
centre, not the origin, makes the sensitivity the size of a cluster rather than of the whole
data set, and leaves a symmetric cluster's mean unbiased at any r: c + E[clip(x − c, r)] = c
only at the cluster's centre of symmetry.
"""

from __future__ import annotations

import math

import numpy as np

DISTANCE_BINS = 40


def distance_edges(dim: int, bins: int = DISTANCE_BINS) -> np.ndarray:
    """Public geometric edges for distances in standardized space: 10⁻³·√d … 10·√d."""
    inner = np.logspace(-3, 1, bins - 1) * math.sqrt(dim)
    return np.concatenate([[0.0], inner, [np.inf]])


def distance_quantile(noisy_hist: np.ndarray, edges: np.ndarray, sigma: float, q: float) -> float:
    """The ``q`` quantile of the distances, from a noisy histogram (bins below 2σ dropped)."""
    counts = np.where(noisy_hist >= 2.0 * sigma, noisy_hist, 0.0)
    if counts.sum() <= 0:
        counts = np.maximum(noisy_hist, 0.0)
    cdf = np.cumsum(counts) / max(counts.sum(), 1e-12)
    i = int(np.searchsorted(cdf, q, side="left"))
    i = min(i, len(edges) - 2)
    top = edges[i + 1] if np.isfinite(edges[i + 1]) else edges[i] * 2
    return float(top)


def displacement_update(
    centres: np.ndarray, sums: np.ndarray, counts: np.ndarray, *, min_count: float,
    max_step: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """c + sum/count for clusters whose noisy count passes ``min_count``; others stay."""
    kept = counts >= min_count
    step = np.zeros_like(centres)
    step[kept] = sums[kept] / counts[kept, None]
    if max_step is not None:  # a mean of clipped displacements never exceeds the radius
        norms = np.linalg.norm(step, axis=1, keepdims=True)
        step *= np.minimum(1.0, max_step / np.maximum(norms, 1e-300))
    return centres + step, kept


def noise_limited_radius(
    spread: float, sigma_per_radius: float, *, dim: int, per_cluster: float,
    noise_to_spread: float, least: float = 0.5, most: float = 1.5,
) -> float:  # fmt: skip
    """The first Lloyd radius: ``spread`` × a factor in [``least``, ``most``] such that a
    centre's predicted noise error r·σ₁·√d / (customers per cluster) — σ₁ the sums' noise std
    at radius 1 — stays within ``noise_to_spread`` of ``spread``."""
    error_per_radius = sigma_per_radius * math.sqrt(dim) / max(per_cluster, 1.0)
    factor = noise_to_spread / max(error_per_radius, 1e-12)
    return spread * float(np.clip(factor, least, most))
