"""Standardization from DP moments, and the DP projection (PCA of a noisy Gram matrix).

Release ``feature_moments``: each merchant maps a customer to u = (clip(m, lower, upper) − c)/h,
c and h the centre and half-width of the public (found) bounds, so u ∈ [-1, 1]^d, and sends
the count (sensitivity 1), Σu (‖u‖ ≤ √d), Σu² (‖u²‖ ≤ √d) and, for a projection, the full
Σuuᵀ (‖uuᵀ‖_F = ‖u‖² ≤ d) as one Gaussian mechanism. Everything below is post-processing.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from fedseg.privacy.scaling import FeatureScaling, unit_box


def moments_sensitivities(d: int, *, gram: bool) -> dict[str, float]:
    out = {"count": 1.0, "sum": math.sqrt(d), "square": math.sqrt(d)}
    return {**out, "second": float(d)} if gram else out


def moments_shares(*, gram: bool) -> dict[str, float]:
    """Budget of each part: the Gram matrix only where a projection needs it."""
    if gram:
        return {"count": 0.1, "sum": 0.25, "square": 0.25, "second": 0.4}
    return {"count": 0.1, "sum": 0.3, "square": 0.6}


def scaling_from_moments(
    noisy: dict[str, np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    names: tuple[str, ...],
    log: tuple[bool, ...],
    sigma_second: float = 0.0,
    sigma_sum: float = 0.0,
    fallback_scale: np.ndarray | None = None,
    fallback_whole: np.ndarray | None = None,
    location: np.ndarray | None = None,
    location_var: np.ndarray | None = None,
) -> FeatureScaling:
    """Mean and standard deviation of the clipped features from noisy moments.

    The noisy variance v = Σu²/n − (Σu/n)² carries noise of std ν = √(σ₂² + (2ū σ₁)²) / n
    (σ₂, σ₁: the noise of Σu² and Σu). Where v is below 3ν it is not resolved and the
    standard deviation falls back to ``fallback_scale`` (the histogram's, or a quarter of
    the box if there is none) — where ``fallback_whole`` says that scale saw the whole
    distribution. A histogram that kept only its significant bins misses thinly spread
    mass and understates the scale, so elsewhere the variance is at least max(v, 0) + ν:
    a scale too small lets an unresolved feature dominate every distance, one too large
    only mutes it.

    Where the range histograms give a ``location`` with finite noise variance
    ``location_var`` (a thin column's matched shape), the mean is the inverse-variance
    average of it and the moments' mean (noise variance (σ₁ · half-width / n)²): at a few
    hundred customers in a box of ±6 scales the moments' mean is the noisier one."""
    n = max(float(noisy["count"][0]), 1.0)
    mean_u = np.clip(noisy["sum"] / n, -1.0, 1.0)
    var_u = noisy["square"] / n - mean_u**2
    centre, half = unit_box(lower, upper)
    nu = np.hypot(sigma_second, 2.0 * mean_u * sigma_sum) / n
    if location is not None and location_var is not None and sigma_sum > 0:
        has = np.isfinite(location_var) & np.isfinite(location)
        moment_var = (sigma_sum * half / n) ** 2
        w = np.where(has, moment_var / (moment_var + np.where(has, location_var, 1.0)), 0.0)
        mean = (1 - w) * (centre + half * mean_u) + w * np.nan_to_num(location)
        mean_u = np.clip((mean - centre) / half, -1.0, 1.0)
    fallback = (
        (fallback_scale / half) ** 2 if fallback_scale is not None else np.full_like(half, 1 / 16)
    )
    whole = np.ones(len(half), dtype=bool) if fallback_whole is None else fallback_whole
    unresolved = np.where(whole, fallback, np.maximum(fallback, np.maximum(var_u, 0.0) + nu))
    var_u = np.where(var_u >= 3.0 * nu, var_u, unresolved)
    var_u = np.clip(np.nan_to_num(var_u, nan=1 / 16), 1e-6, 1.0)
    if fallback_scale is not None:  # never finer than a tenth of the histogram's scale
        var_u = np.maximum(var_u, (0.1 * fallback_scale / half) ** 2)
    return FeatureScaling(
        names=names,
        log=log,
        lower=tuple(float(v) for v in lower),
        upper=tuple(float(v) for v in upper),
        mean=tuple(float(v) for v in centre + half * mean_u),
        scale=tuple(float(v) for v in half * np.sqrt(var_u)),
    )


def projection_from_moments(
    noisy: dict[str, np.ndarray], scaling: FeatureScaling, p: int, *, sigma_second: float = 0.0
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Top-``p`` principal directions (d, p) and variances (p,) in standardized space.

    The noise of Σuuᵀ (std ``sigma_second`` per entry) spreads the eigenvalues of the noisy
    covariance up to about 2·w·√d (the semicircle edge of a symmetric noise matrix with
    entries of std w, here w the rms entry noise in standardized units); each variance is
    taken as its excess over that edge, and directions without excess are dropped (none
    left: ``(None, None)``, i.e. no projection). Without this, at a few thousand customers
    and d ≈ 60 the noise's eigenvalues (~60) dwarf the data's and the candidate cells would
    be drawn far outside the data."""
    n = max(float(noisy["count"][0]), 1.0)
    centre, half = unit_box(np.asarray(scaling.lower), np.asarray(scaling.upper))
    mean_u = (np.asarray(scaling.mean) - centre) / half
    gram = (noisy["second"] + noisy["second"].T) / 2
    cov_u = gram / n - np.outer(mean_u, mean_u)
    s = half / np.asarray(scaling.scale)
    cov_z = cov_u * np.outer(s, s)
    d = len(s)
    # symmetrizing halves the off-diagonal noise variance
    w = sigma_second / n / np.sqrt(2) * float(np.sqrt(np.mean(np.outer(s, s) ** 2)))
    edge = 2.0 * w * np.sqrt(d)
    values, vectors = np.linalg.eigh(cov_z)
    order = np.argsort(values)[::-1][:p]
    excess = values[order] - edge
    keep = excess > 0
    if not keep.any():
        return None, None
    return vectors[:, order[keep]], excess[keep]


def clustering_scaling(
    scaling: FeatureScaling,
    known_lower: np.ndarray,
    known_upper: np.ndarray,
    *,
    degenerate: np.ndarray,
) -> FeatureScaling:
    """The published scaling: clipped to the schema's known bounds only, except that a
    degenerate feature (``ranges.degenerate_columns``) is clipped to its found bounds and its
    scale is at least their half-width.

    Found bounds only bound the moments' sensitivity; displacement clipping bounds every
    later release, and a found bound that cuts a cluster would move its centre. A degenerate
    feature holds no cluster the histograms can see: unclipped, its scale (a fraction of one
    bin) would put its rare other values thousands of units away and let them dominate every
    distance, so it is confined to ±1 around its mean."""
    found_lo, found_hi = np.asarray(scaling.lower), np.asarray(scaling.upper)
    lower = np.where(degenerate, found_lo, np.nan_to_num(known_lower, nan=-np.inf))
    upper = np.where(degenerate, found_hi, np.nan_to_num(known_upper, nan=np.inf))
    lower = np.where(np.isnan(known_lower), lower, np.maximum(lower, known_lower))
    upper = np.where(np.isnan(known_upper), upper, np.minimum(upper, known_upper))
    scale = np.where(
        degenerate, np.maximum(scaling.scale, (found_hi - found_lo) / 2), scaling.scale
    )
    return replace(
        scaling, lower=tuple(float(v) for v in lower), upper=tuple(float(v) for v in upper),
        scale=tuple(float(v) for v in scale),
    )  # fmt: skip
