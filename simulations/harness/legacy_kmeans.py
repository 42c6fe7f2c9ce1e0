"""The previous fit's server steps (before issue 16), kept as the harness's legacy baseline.

Histogram edges over declared ranges, quantile clip bounds, candidates from the product of
the marginals, k-means++ seeding and box-clipped Lloyd updates: post-processing of noisy
aggregates only. ``simulations/harness/legacy.py`` replays the old fit with them.
"""

from __future__ import annotations

import numpy as np
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server.ranges import denoise_histograms
from sklearn.cluster import KMeans

WIDE_RANGE = 1e4  # declared ranges wider than this get asinh-spaced bins


def histogram_edges(lower: np.ndarray, upper: np.ndarray, bins: int) -> np.ndarray:
    """Public bin edges per feature in model space, shape (d, bins + 1).

    Evenly spaced over a declared range; a very wide range (an undeclared feature gets
    [-1e6, 1e6]) is spaced evenly in asinh instead, so values of any magnitude still
    fall into bins of about their own size.
    """
    edges = np.linspace(lower, upper, bins + 1, axis=1)
    wide = (np.asarray(upper) - np.asarray(lower)) > WIDE_RANGE
    if np.any(wide):
        grid = np.linspace(np.arcsinh(lower[wide]), np.arcsinh(upper[wide]), bins + 1, axis=1)
        edges[wide] = np.sinh(grid)
    return edges


def scaling_from_histograms(
    noisy_counts: np.ndarray,
    edges: np.ndarray,
    *,
    names: tuple[str, ...],
    log: tuple[bool, ...],
    quantiles: tuple[float, float] = (0.001, 0.999),
    noise_sigma: float = 0.0,
) -> FeatureScaling:
    """Clip bounds at noisy quantiles, then mean and scale of the clipped marginals.

    Bins that noise alone could explain are treated as empty (``denoise_histograms``):
    with many empty bins, their positive noise would otherwise push the quantiles out.
    """
    lower, upper, mean, scale = [], [], [], []
    for counts, e in zip(denoise_histograms(noisy_counts, noise_sigma), edges, strict=True):
        lo, hi = _quantile_bounds(counts, e, quantiles)
        mids = np.clip((e[:-1] + e[1:]) / 2, lo, hi)
        total = counts.sum()
        mu = float(mids @ counts / total) if total > 0 else (lo + hi) / 2
        var = float(((mids - mu) ** 2) @ counts / total) if total > 0 else 0.0
        # A scale below the local bin width would only standardize binning error.
        width = float(np.diff(e)[min(np.searchsorted(e, mu, side="right") - 1, len(e) - 2)])
        scale.append(max(np.sqrt(var), width / 2, 1e-12))
        lower.append(lo)
        upper.append(hi)
        mean.append(mu)
    return FeatureScaling(names, log, tuple(lower), tuple(upper), tuple(mean), tuple(scale))


def _quantile_bounds(counts: np.ndarray, e: np.ndarray, quantiles) -> tuple[float, float]:
    total = counts.sum()
    if total <= 0:
        return float(e[0]), float(e[-1])
    cdf = np.concatenate([[0.0], np.cumsum(counts) / total])
    if quantiles == (0.0, 1.0):  # exact range of the occupied bins (used when ε = ∞)
        occupied = np.flatnonzero(counts > 0)
        return float(e[occupied[0]]), float(e[occupied[-1] + 1])
    lo, hi = np.interp(quantiles, cdf, e)
    if hi <= lo:
        hi = lo + (e[1] - e[0])
    return float(lo), float(hi)


def sample_candidates(
    noisy_counts: np.ndarray,
    edges: np.ndarray,
    scaling: FeatureScaling,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` points drawn from the product of the noisy marginals, in standardized space."""
    columns = []
    for counts, e in zip(noisy_counts, edges, strict=True):
        p = counts / counts.sum() if counts.sum() > 0 else np.full(len(counts), 1 / len(counts))
        b = rng.choice(len(counts), size=n, p=p)
        columns.append(rng.uniform(e[b], e[b + 1]))
    model_space = np.clip(np.stack(columns, axis=1), scaling.lower, scaling.upper)
    return (model_space - np.asarray(scaling.mean)) / np.asarray(scaling.scale)


def seed_centres(
    sums: np.ndarray,
    counts: np.ndarray,
    k: int,
    *,
    min_count: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Weighted k-means++ (k-FED style) over the noisy means of well-populated candidates."""
    keep = counts >= min_count
    if keep.sum() < k:  # too few trustworthy cells: take the k heaviest ones
        keep = np.zeros_like(keep)
        keep[np.argsort(counts)[-k:]] = True
    means = sums[keep] / np.maximum(counts[keep], 1e-12)[:, None]
    model = KMeans(n_clusters=k, n_init=10, random_state=int(rng.integers(2**31 - 1)))
    model.fit(means, sample_weight=np.maximum(counts[keep], 1e-12))
    return model.cluster_centers_


def update_centres(
    previous: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    *,
    min_count: float,
    box: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """One Lloyd update from noisy sums and counts; returns (centres, kept-mask).

    A cluster whose noisy count is below ``min_count`` keeps its previous centre: its
    mean would be mostly noise. New centres are projected into the public clip box.
    """
    kept = counts >= min_count
    centres = previous.copy()
    centres[kept] = sums[kept] / counts[kept, None]
    return np.clip(centres, box[0], box[1]), kept
