"""Private range finding: public bin edges from a very wide range down to the data's scale.

A feature with public bounds gets evenly spaced bins over them (on its clustering scale). A
side the schema marks "unknown" gets geometric bins: edges at ±10^j for j from
``-DECADES`` to ``+DECADES`` (both sides unknown: symmetric about 0; one side known: growing
away from it), so a column of any magnitude between 1e-6 and 1e6 falls into bins about its
own size. Everything here is post-processing of one noisy histogram per feature (release
``feature_ranges``: one count per feature per customer, L2 sensitivity √d).
"""

from __future__ import annotations

import numpy as np
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.server.kmeans import denoise_histograms

DECADES = 6.0  # unknown sides span 10^-6 .. 10^6 around the known side (or 0)


def range_edges(schema: FeatureSchema, bins: int) -> np.ndarray:
    """Bin edges per feature on the clustering scale, shape (d, bins + 1), increasing."""
    lo, hi = schema.model_bounds()
    rows = []
    for f, a, b in zip(schema.features, lo, hi, strict=True):
        if f.bounded:
            rows.append(np.linspace(a, b, bins + 1))
        elif np.isnan(a) and np.isnan(b):  # symmetric: ..., -1e-6, (0,) 1e-6, ...
            g = np.logspace(-DECADES, DECADES, (bins + 1) // 2)
            middle = [0.0] if bins % 2 == 0 else []
            rows.append(np.concatenate([-g[::-1], middle, g]))
        else:  # one known side: 0, 1e-6, ..., 1e6 away from it
            g = np.concatenate([[0.0], np.logspace(-DECADES, DECADES, bins)])
            raw = f.lower + g if not np.isnan(a) else f.upper - g[::-1]
            rows.append(np.log1p(np.maximum(raw, 0.0)) if f.log else raw)
    return np.stack(rows)


def bounds_from_histograms(
    noisy_counts: np.ndarray,
    edges: np.ndarray,
    sigma: float,
    *,
    tail: float = 0.001,
    widen: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip bounds per feature: the ``tail`` and 1 − ``tail`` quantiles of the bins that
    noise alone could not explain (``server/kmeans.py:denoise_histograms``, which merges
    bins until thin mass passes its test), widened to the edges of the bins they fall in
    (geometric bins are coarse, so a bound never cuts into the bin its quantile lies in)."""
    mass = denoise_histograms(noisy_counts, sigma) if sigma > 0 else np.maximum(noisy_counts, 0)
    lower, upper = [], []
    for m, e in zip(mass, edges, strict=True):
        occupied = np.flatnonzero(m > 0)
        if occupied.size == 0:
            lower.append(e[0])
            upper.append(e[-1])
            continue
        cdf = np.cumsum(m) / m.sum()
        first = int(np.searchsorted(cdf, tail, side="left")) if tail > 0 else occupied[0]
        last = int(np.searchsorted(cdf, 1.0 - tail, side="left")) if tail > 0 else occupied[-1]
        # one more bin on each side: a bound that cuts a cluster costs more than a wide box
        first, last = max(first - widen, 0), min(last + widen, len(e) - 2)
        lower.append(e[first])
        upper.append(e[last + 1])
    return np.array(lower), np.array(upper)


def robust_scale(
    noisy_counts: np.ndarray, edges: np.ndarray, sigma: float, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Interquartile range / 1.349 of each feature's denoised histogram inside the bounds
    (a fallback standard deviation when the moments are too noisy)."""
    mass = denoise_histograms(noisy_counts, sigma) if sigma > 0 else np.maximum(noisy_counts, 0)
    out = []
    for m, e, a, b in zip(mass, edges, lower, upper, strict=True):
        total = m.sum()
        if total <= 0:
            out.append((b - a) / 4)
            continue
        cdf = np.concatenate([[0.0], np.cumsum(m) / total])
        q1, q3 = np.interp([0.25, 0.75], cdf, e)
        out.append(max((q3 - q1) / 1.349, (b - a) / 200))
    return np.array(out)


def shrink_bounds(
    lower: np.ndarray, upper: np.ndarray, schema: FeatureSchema
) -> tuple[np.ndarray, np.ndarray]:
    """Known public bounds always win over found ones, and found ones never leave them."""
    lo, hi = schema.model_bounds()
    lower = np.where(np.isnan(lo), lower, np.maximum(lower, lo))
    upper = np.where(np.isnan(hi), upper, np.minimum(upper, hi))
    upper = np.where(upper > lower, upper, lower + 1e-9 * np.maximum(1.0, np.abs(lower)))
    return lower, upper
