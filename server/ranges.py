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


def significant_bins(
    noisy_counts: np.ndarray, sigma: float, *, threshold: float = 4.0
) -> np.ndarray:
    """Bins whose noisy count is above ``threshold`` σ, or above half of it with a neighbour
    that is too (mass spread over adjacent bins); a feature with none keeps its largest bin."""
    strong = noisy_counts >= threshold * sigma
    half = noisy_counts >= 0.5 * threshold * sigma
    pair = np.zeros_like(half)
    pair[:, 1:] |= half[:, 1:] & half[:, :-1]
    pair[:, :-1] |= half[:, :-1] & half[:, 1:]
    keep = strong | pair
    empty = ~keep.any(axis=1)
    keep[empty, np.argmax(noisy_counts[empty], axis=1)] = True
    return keep


def bounds_from_histograms(
    noisy_counts: np.ndarray,
    edges: np.ndarray,
    sigma: float,
    *,
    tail: float = 0.005,
    threshold: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip bounds per feature: the ``tail`` and 1 − ``tail`` quantiles of the significant
    bins' mass, widened to the edges of the bins they fall in (geometric bins are coarse,
    so the bound is never inside the bin the quantile lies in)."""
    keep = significant_bins(noisy_counts, sigma, threshold=threshold)
    mass = np.where(keep, np.maximum(noisy_counts, 0.0), 0.0)
    lower, upper = [], []
    for m, e in zip(mass, edges, strict=True):
        cdf = np.cumsum(m) / max(m.sum(), 1e-12)
        first = int(np.searchsorted(cdf, tail, side="left"))
        last = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
        lower.append(e[first])
        upper.append(e[min(last, len(e) - 2) + 1])
    return np.array(lower), np.array(upper)


def shrink_bounds(
    lower: np.ndarray, upper: np.ndarray, schema: FeatureSchema
) -> tuple[np.ndarray, np.ndarray]:
    """Known public bounds always win over found ones, and found ones never leave them."""
    lo, hi = schema.model_bounds()
    lower = np.where(np.isnan(lo), lower, np.maximum(lower, lo))
    upper = np.where(np.isnan(hi), upper, np.minimum(upper, hi))
    upper = np.where(upper > lower, upper, lower + 1e-9 * np.maximum(1.0, np.abs(lower)))
    return lower, upper
