"""Private range finding: public bin edges from a very wide range down to the data's scale.

A feature with public bounds gets evenly spaced bins over them (on its clustering scale). A
side the schema marks "unknown" gets geometric bins: edges at ±10^j for j from
``-DECADES`` to ``+DECADES`` (both sides unknown: symmetric about 0; one side known: growing
away from it), so a column of any magnitude between 1e-6 and 1e6 falls into bins about its
own size. Everything here is post-processing of one noisy histogram per feature (release
``feature_ranges``: one count per feature per customer, L2 sensitivity √d).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from fedseg.privacy.protocol.schema import FeatureSchema

DECADES = 6.0  # unknown sides span 10^-6 .. 10^6 around the known side (or 0)
TAIL = 0.001  # private bounds: the 0.1 % and 99.9 % noisy quantiles
KEEP_PUBLIC = 0.5  # a public box is kept unless the found range is narrower than this share
TRIM_SIGMAS = 2.0  # a kept run of bins ends at its outermost bin holding this many σ


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
    noise alone could not explain (``denoise_histograms``, which merges
    bins until thin mass passes its test), widened to the edges of the bins they fall in
    (geometric bins are coarse, so a bound never cuts into the bin its quantile lies in)."""
    mass = kept_mass(noisy_counts, sigma, trim=True)
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


def kept_mass(noisy_counts: np.ndarray, sigma: float, *, trim: bool = False) -> np.ndarray:
    """The histograms' mass noise alone could not explain (``denoise_histograms``; at σ = 0
    the counts themselves), with ``trim`` cut to the outermost strong bins
    (``trim_kept_ends``)."""
    if sigma <= 0:
        return np.maximum(noisy_counts, 0)
    mass = denoise_histograms(noisy_counts, sigma)
    return trim_kept_ends(mass, noisy_counts, sigma) if trim else mass


def trim_kept_ends(mass: np.ndarray, noisy_counts: np.ndarray, sigma: float) -> np.ndarray:
    """``mass`` without the kept bins outside the outermost ones holding at least σ.

    A group of merged bins that passes the significance test keeps all its bins; a
    geometric group spans two decades, so the empty bins in it (clipped noise, ~0.4σ each)
    would carry a quantile bound far beyond the data. A feature with no bin of σ keeps all."""
    strong = (mass > 0) & (noisy_counts >= TRIM_SIGMAS * sigma)
    out = mass.copy()
    for j, row in enumerate(strong):
        hits = np.flatnonzero(row)
        if hits.size:
            out[j, : hits[0]] = 0.0
            out[j, hits[-1] + 1 :] = 0.0
    return out


def significant_mass(noisy_counts: np.ndarray, sigma: float) -> np.ndarray:
    """Per feature, the noisy mass in bins noise alone could not explain (0 if none)."""
    if sigma <= 0:
        return np.maximum(noisy_counts, 0).sum(axis=1)
    kept = denoise_histograms(noisy_counts, sigma)
    fell_back = np.all((kept > 0) == (noisy_counts > 0), axis=1) & (noisy_counts < 6 * sigma).all(
        axis=1
    )
    return np.where(fell_back, 0.0, kept.sum(axis=1))


def histogram_scale(
    noisy_counts: np.ndarray, edges: np.ndarray, sigma: float, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and kept mass of each feature's denoised histogram, bin
    midpoints clipped to the bounds (the scale when the moments are too noisy)."""
    mass = kept_mass(noisy_counts, sigma)
    means, stds, kept = [], [], []
    for m, e, a, b in zip(mass, edges, lower, upper, strict=True):
        mids = np.clip((e[:-1] + e[1:]) / 2, a, b)
        total = m.sum()
        mu = float(mids @ m / total) if total > 0 else (a + b) / 2
        var = float(((mids - mu) ** 2) @ m / total) if total > 0 else ((b - a) / 4) ** 2
        means.append(mu)
        stds.append(max(np.sqrt(var), (b - a) / 1000, 1e-9))
        kept.append(total)
    return np.array(means), np.array(stds), np.array(kept)


def shrink_bounds(
    lower: np.ndarray,
    upper: np.ndarray,
    schema: FeatureSchema,
    *,
    keep_public: float = 0.0,
    reliable: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Known public bounds always win over found ones, and found ones never leave them.

    A feature with both bounds public keeps them unless the found range is narrower than
    ``keep_public`` of the public one and ``reliable`` (most of the feature's mass is in
    significant bins): noisy quantiles cut thin tails (a share that is 0 for most
    customers), and a tight public box needs no shrinking."""
    lo, hi = schema.model_bounds()
    bounded = ~np.isnan(lo) & ~np.isnan(hi)
    narrow = (upper - lower) < keep_public * (hi - lo)
    if reliable is not None:
        narrow &= reliable
    lower = np.where(bounded & ~narrow, lo, lower)
    upper = np.where(bounded & ~narrow, hi, upper)
    lower = np.where(np.isnan(lo), lower, np.maximum(lower, lo))
    upper = np.where(np.isnan(hi), upper, np.minimum(upper, hi))
    upper = np.where(upper > lower, upper, lower + 1e-9 * np.maximum(1.0, np.abs(lower)))
    return lower, upper


def matched_location_scale(
    noisy_counts: np.ndarray, edges: np.ndarray, *, grid: int = 48, max_bin_share: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per feature the Gaussian (μ, s) whose binned shape best matches the noisy histogram,
    and its amplitude (the customers it accounts for): least squares with a free amplitude,
    i.e. a matched filter over a (μ, s) grid. Every bin contributes, so this finds the scale
    of a column whose few hundred customers are spread too thinly for any one bin to be
    significant. Every feature counts the same customers, so a second pass keeps only
    shapes whose amplitude is within a factor 2 of the features' median amplitude (a noise
    spike in one narrow bin is a good match only for a tiny amplitude). The coarse (μ, s)
    grid is then refined between its neighbouring points."""
    cores = min(len(edges), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=cores) as threads:  # the ufuncs free the GIL
        fits = list(threads.map(
            lambda h, e: _coarse_fit(h, e, grid=grid, max_bin_share=max_bin_share),
            noisy_counts, edges,
        ))  # fmt: skip
    # Every feature counts the same customers: one amplitude n̂ for all (the median of the
    # free-amplitude fits), then per feature the shape minimizing ‖h − n̂·t‖².
    amps_free = []
    for th, tt, _, _ in fits:
        score = np.where(tt > 0, th**2 / np.maximum(tt, 1e-300), -np.inf)
        i, j = np.unravel_index(np.nanargmax(score), score.shape)
        amps_free.append(th[i, j] / tt[i, j])
    n_hat = max(float(np.median(amps_free)), 1.0)
    mus, scales, amps = [], [], []
    for (th, tt, s_grid, mu_grid), h, e in zip(fits, noisy_counts, edges, strict=True):
        fit = np.nan_to_num(2 * n_hat * th - n_hat**2 * tt, nan=-np.inf)
        i, j = np.unravel_index(np.argmax(fit), fit.shape)
        mu, s = _refine_shape(h, np.clip(e, -1e12, 1e12), n_hat, mu_grid, j, s_grid[i])
        mus.append(mu)
        scales.append(s)
        amps.append(n_hat)
    return np.array(mus), np.array(scales), np.array(amps)


def _coarse_fit(
    h: np.ndarray, edges: np.ndarray, *, grid: int, max_bin_share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One feature's coarse (s, μ) grid: t·h and t·t of every shape t (NaN for a shape
    with more than ``max_bin_share`` of its mass in one bin), the grid's s and μ. One s at a
    time: its masses (μ × bins) stay in cache, where all of them at once (~3 MB a feature)
    cost more in page faults than in arithmetic."""
    finite = np.clip(edges, -1e12, 1e12)
    widths = np.diff(finite)
    s_grid = np.geomspace(max(widths[widths > 0].min(), 1e-9), max(np.ptp(finite), 1e-9), grid)
    mu_grid = finite
    th, tt = np.empty((grid, len(mu_grid))), np.empty((grid, len(mu_grid)))
    for i in range(grid):
        t = _shape_masses(finite, mu_grid, s_grid[i : i + 1])[0]
        # A shape inside one bin matches any single noise spike; real columns of unknown
        # range spread over several of these bins.
        t = np.where(t.max(axis=1, keepdims=True) <= max_bin_share, t, np.nan)
        th[i], tt[i] = t @ h, np.sum(t * t, axis=1)
    return th, tt, s_grid, mu_grid


def _refine_shape(
    h: np.ndarray, edges: np.ndarray, n_hat: float, mu_grid: np.ndarray, j: int, s: float,
    *, steps: int = 17,
) -> tuple[float, float]:  # fmt: skip
    """The best (μ, s) of the amplitude-``n_hat`` Gaussian on a fine grid between the coarse
    grid's neighbours of (μ_j, s) (the coarse s grid steps by ~1.8×)."""
    mu_fine = np.linspace(mu_grid[max(j - 1, 0)], mu_grid[min(j + 1, len(mu_grid) - 1)], steps)
    s_fine = s * np.geomspace(1 / 1.8, 1.8, steps)
    t = _shape_masses(edges, mu_fine, s_fine)
    fit = 2 * n_hat * (t @ h) - n_hat**2 * np.sum(t * t, axis=2)
    a, b = np.unravel_index(np.argmax(fit), fit.shape)
    return float(mu_fine[b]), float(s_fine[a])


def _shape_masses(edges: np.ndarray, mus: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(scales, mus, bins): each Gaussian N(μ, s²)'s mass in each bin of ``edges``."""
    from scipy.special import ndtr

    z = (edges[None, None, :] - mus[None, :, None]) / scales[:, None, None]
    return np.diff(ndtr(z), axis=2)


@dataclass(frozen=True)
class FoundRanges:
    """What the range histograms say per feature (model space)."""

    lower: np.ndarray  # clip bounds
    upper: np.ndarray
    scale: np.ndarray  # the histograms' scale, the fallback of the moments' one
    whole: np.ndarray  # whether that scale saw the whole distribution
    location: np.ndarray  # a thin column's matched-shape location (NaN elsewhere)
    location_var: np.ndarray  # its noise variance (``location_variance``; ∞ elsewhere)


def found_bounds(
    noisy_counts: np.ndarray, edges: np.ndarray, sigma: float, schema: FeatureSchema,
    *, private: bool,
) -> FoundRanges:  # fmt: skip
    """Per feature: clip bounds, a fallback scale, whether it is whole, and for thin
    columns the matched shape's location (``FoundRanges``).

    Bounds are the noisy ``TAIL`` quantiles of the significant mass, widened by a bin. For
    columns too thin for significant bins (a few hundred customers), a matched Gaussian shape
    over all bins gives location and scale: bounds μ ± 6s; otherwise, unless the histogram
    is well resolved, the bounds hold at least μ ± 4s of that shape (noisy quantiles cut thin
    tails). A publicly bounded feature keeps its public box unless the found range is much
    narrower and well resolved (``shrink_bounds``). At ε = ∞: the exact occupied range.
    The fallback scale is whole for thin columns (the matched shape spans every bin) and
    where the significant bins hold nearly every customer; otherwise it misses the mass
    that is spread too thinly to pass the noise."""
    tail = TAIL if private else 0.0
    lower, upper = bounds_from_histograms(noisy_counts, edges, sigma, tail=tail, widen=int(private))
    _, fallback, _ = histogram_scale(noisy_counts, edges, sigma, lower, upper)
    reliable, whole = None, np.ones(len(lower), dtype=bool)
    if private:
        mu, s_fit, amplitude = matched_location_scale(noisy_counts, edges)
        kept = significant_mass(noisy_counts, sigma)
        thin = (kept < 0.7 * float(np.median(amplitude))) & schema.unknown().any(axis=1)
        # every feature counts every customer: the median total is a good n̂
        reliable = kept >= 0.95 * float(np.median(noisy_counts.sum(axis=1)))
        wide = ~thin & ~reliable
        lower = np.where(thin, mu - 6 * s_fit,
                         np.where(wide, np.minimum(lower, mu - 4 * s_fit), lower))  # fmt: skip
        upper = np.where(thin, mu + 6 * s_fit,
                         np.where(wide, np.maximum(upper, mu + 4 * s_fit), upper))  # fmt: skip
        fallback = np.where(thin, s_fit, fallback)
        whole = thin | reliable
        location_var = np.where(
            thin, location_variance(edges, mu, s_fit, amplitude, sigma), np.inf
        )  # fmt: skip
        location = np.where(thin, mu, np.nan)
    else:
        location, location_var = np.full(len(lower), np.nan), np.full(len(lower), np.inf)
    lower, upper = shrink_bounds(lower, upper, schema, keep_public=KEEP_PUBLIC, reliable=reliable)
    return FoundRanges(lower, upper, np.maximum(fallback, 1e-9), whole, location, location_var)


def location_variance(
    edges: np.ndarray, mu: np.ndarray, s: np.ndarray, amplitude: np.ndarray, sigma: float
) -> np.ndarray:
    """Noise variance of a matched shape's location: the inverse Fisher information of μ in
    counts n̂·t_b(μ, s) + N(0, σ²), t_b the shape's mass in bin b, i.e.
    σ² / (n̂² Σ_b (∂t_b/∂μ)²), with ∂t_b/∂μ = (φ(a_b) − φ(a_{b+1}))/s at a = (edge − μ)/s."""
    a = (np.clip(edges, -1e12, 1e12) - mu[:, None]) / s[:, None]
    density = np.exp(-0.5 * a**2) / np.sqrt(2 * np.pi)
    slope = -np.diff(density, axis=1) / s[:, None]
    information = amplitude**2 * np.sum(slope**2, axis=1) / max(sigma, 1e-12) ** 2
    return 1.0 / np.maximum(information, 1e-300)


def degenerate_columns(
    noisy_counts: np.ndarray, edges: np.ndarray, sigma: float, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Features whose significant mass has a spread below one bin: the standard deviation of
    the denoised, trimmed histogram (bin midpoints clipped to the bounds) is less than that
    of a uniform over the fullest bin (its width / √12), e.g. a pixel column that is 0 for
    nearly every customer. Any scale found for them is noise or a handful of customers. Only
    features whose significant bins hold most customers (70 % of the median row total, the
    share below which ``found_bounds`` calls a column thin) qualify: a thin column's one
    significant bin is a spike among mass the histogram cannot resolve."""
    mass = kept_mass(noisy_counts, sigma, trim=True)
    n_hat = float(np.median(noisy_counts.sum(axis=1)))
    out = []
    for m, e, a, b in zip(mass, edges, lower, upper, strict=True):
        total = m.sum()
        if total < 0.7 * n_hat or total <= 0:
            out.append(False)
            continue
        lo_e, hi_e = np.clip(e[:-1], a, b), np.clip(e[1:], a, b)
        mids = (lo_e + hi_e) / 2
        mu = mids @ m / total
        std = np.sqrt(((mids - mu) ** 2) @ m / total)
        fullest = int(np.argmax(m))
        out.append(bool(std < (hi_e[fullest] - lo_e[fullest]) / np.sqrt(12)))
    return np.array(out, dtype=bool)


def denoise_histograms(noisy_counts: np.ndarray, noise_sigma: float) -> np.ndarray:
    """Noisy counts with the bins noise alone could explain set to zero.

    A bin stays if it is above 6σ, or above 3σ with a neighbour above 3σ too. Among
    128 bins × d features of pure noise, a lone bin passes 6σ with probability ~1e-9
    and an adjacent pair passes 3σ with probability ~2e-6 each, so stray bins far out,
    which would drag the quantile bounds with them, almost never survive. Mass spread
    thinly over many fine bins can fall below the test; so each feature uses the finest
    resolution (bins merged in groups of 1, 2, 4 or 8; σ grows as √group) that keeps at
    least 90% of the mass the best resolution keeps. A feature left with no bin keeps
    its clipped noisy counts.
    """
    counts = np.maximum(noisy_counts, 0.0)
    n_features, n_bins = noisy_counts.shape
    levels = []
    for group in (1, 2, 4, 8):
        if n_bins % group:
            break
        merged = noisy_counts.reshape(n_features, n_bins // group, group).sum(axis=2)
        levels.append(np.repeat(_significant(merged, noise_sigma * np.sqrt(group)), group, axis=1))
    # Compare levels on the unclipped counts: a kept bin of pure noise adds zero on average,
    # whereas its clipped count adds ~0.4σ, which would favour the coarsest level.
    kept_mass = np.stack([np.where(kept, noisy_counts, 0.0).sum(axis=1) for kept in levels])
    finest_good = np.argmax(kept_mass >= 0.9 * kept_mass.max(axis=0), axis=0)
    kept = np.stack([levels[level][j] for j, level in enumerate(finest_good)])
    kept_counts = np.where(kept, counts, 0.0)
    return np.where(kept_counts.sum(axis=1, keepdims=True) > 0, kept_counts, counts)


def _significant(noisy_counts: np.ndarray, sigma: float) -> np.ndarray:
    over3 = noisy_counts >= 3.0 * sigma
    neighbour = np.zeros_like(over3)
    neighbour[:, 1:] |= over3[:, :-1]
    neighbour[:, :-1] |= over3[:, 1:]
    return (noisy_counts >= 6.0 * sigma) | (over3 & neighbour)
