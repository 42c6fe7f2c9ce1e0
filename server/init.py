"""Private initialization: over-complete candidate cells, then weighted k-means++ on them.

Candidates are public random points spread like the data (a Gaussian with the DP covariance,
in the DP projection when there is one). One or two ``cluster_displacements`` releases move
each candidate to (an estimate of) the mean of its Voronoi cell; weighted k-means++ on the
well-populated cells' means gives k centres. Server-side post-processing only.
"""

from __future__ import annotations

import math

import numpy as np


def gaussian_candidates(
    m: int, dim: int, rng: np.random.Generator, *, basis: np.ndarray | None = None,
    variances: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """``m`` points ~ N(0, I) in standardized space, or, with a basis, on the shell where
    N(0, V diag(λ) Vᵀ) concentrates: y = √p · g/‖g‖ · √λ, g ~ N(0, I_p). In p = k ≫ 1
    dimensions a Gaussian candidate of small norm is nearer to every cluster than the
    rest are and captures several clusters at once (hubness; BENCHMARKS.md); at a common
    norm the nearest candidate is independent from one cluster to the next."""
    if basis is None:
        return rng.standard_normal((m, dim))
    p = basis.shape[1]
    g = rng.standard_normal((m, p))
    g *= math.sqrt(p) / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return (g * np.sqrt(np.maximum(variances, 1e-12))) @ basis.T


def split_cells(
    cells: np.ndarray, rng: np.random.Generator, *, basis: np.ndarray | None = None,
    offset: float = 1e-3,
) -> np.ndarray:  # fmt: skip
    """Each cell as two candidates just either side of its mean along a random direction
    (in the projection, if any): the bisector between them runs through the mean, so two
    clusters blended in one cell fall on opposite sides (their means are symmetric about
    it) and the next displacement round separates them; a single cluster is halved, and
    the weighted k-means over cells joins its halves again."""
    p = cells.shape[1] if basis is None else basis.shape[1]
    v = rng.standard_normal((len(cells), p))
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    if basis is not None:
        v = v @ basis.T
    return np.concatenate([cells + offset * v, cells - offset * v])


def candidate_count(n: float, k: int, min_cell: float, *, most: int) -> int:
    """As many cells as the data fill with ``min_cell`` customers each, between 2k and most."""
    return int(np.clip(n / max(min_cell, 1.0), 2 * k, most))


def seed_from_cells(
    means: np.ndarray, counts: np.ndarray, k: int, *, min_count: float, rng: np.random.Generator
) -> np.ndarray:
    """Weighted k-means++ (n_init=10) over the means of cells with enough customers."""
    keep = counts >= min_count
    if keep.sum() < k:
        keep = np.zeros_like(keep)
        keep[np.argsort(counts)[-k:]] = True
    from sklearn.cluster import KMeans  # imported here: 0.9 s of every ServerApp start

    model = KMeans(n_clusters=k, n_init=10, random_state=int(rng.integers(2**31 - 1)))
    model.fit(means[keep], sample_weight=np.maximum(counts[keep], 1e-12))
    return model.cluster_centers_


def shrink_steps(
    before: np.ndarray, after: np.ndarray, counts: np.ndarray, *, sigma_sums: float
) -> np.ndarray:
    """Each cell's step (after − before) shrunk toward its public candidate point by the
    positive-part James–Stein factor 1 − E‖noise‖²/‖step‖², E‖noise‖² = σ²·d/count²
    (the noisy sum's error divided by the count).

    A cell of a few dozen customers in d ≈ 60 dimensions moves by noise about as far as the
    whole data set is wide; seeded from such cells, k-means++ put most of digits' ten
    centres outside the data (eight of ten clusters empty). Its step is now mostly
    dropped, while a well-filled cell (error ≪ step) keeps its step. Used where the
    candidates are drawn in the DP-PCA subspace (d > 16), i.e. from the data's principal
    distribution; measured without a projection (wine, d = 13; the e-commerce events),
    shrinking toward N(0, I) candidates lost more than it gained."""
    step = after - before
    d = before.shape[1]
    noise = sigma_sums**2 * d / np.maximum(counts, 1.0) ** 2
    length = np.sum(step**2, axis=1)
    factor = np.clip(1.0 - noise / np.maximum(length, 1e-300), 0.0, 1.0)
    return before + factor[:, None] * step


def clean_cell_count(sigma_sums: float, dim: int, radius: float, cell_error: float) -> float:
    """The count above which a cell's noisy mean (error σ_sums·√d / count) is within
    ``cell_error`` × ``radius`` of its customers' mean."""
    return sigma_sums * math.sqrt(dim) / (cell_error * radius)
