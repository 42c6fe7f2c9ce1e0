"""The proposed fit over a harness ``Channel``: ranges → moments (+ projection) → init → Lloyd.

Every stage is a release computed by the merchants with ``client/statistics.py`` functions
and a ``GaussianMechanism``, followed by server post-processing from ``server/ranges.py``,
``server/standardize.py``, ``server/init.py`` and ``server/lloyd.py``. The budget is one
``calibrate`` over every planned release, as ``server/budget.py`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from fedseg.client.statistics import clipped_moments, displacement_statistics, feature_histograms
from fedseg.privacy.accounting import PlannedRelease, calibrate
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.releases import sums_share
from fedseg.privacy.scaling import to_unit
from fedseg.server import init as init_mod
from fedseg.server import lloyd, noise_report, ranges, standardize
from fedseg.simulations.harness.channel import Channel


@dataclass(frozen=True)
class FitConfig:
    range_bins: int = 96
    range_share: float = 0.15
    moments_share: float = 0.10
    init_share: float = 0.25
    init_rounds: int = 1
    rounds: int = 2
    project_above: int = 16  # d above this: DP-PCA to p = k dimensions for the init
    max_candidates_per_k: int = 20
    radius_quantile: float = 0.9
    distance_share: float = 0.05  # of a displacement release
    min_count_sigmas: float = 3.0
    init_radius: float = 1.0  # × √d, the first init round's displacement radius
    min_cell_sigmas: float = 1.0
    keep_public: float = 0.5  # public bounds kept unless the found range is narrower
    radius_cap: float = 2.0  # × √d: the first Lloyd radius at most
    matched_span: float = 40.0  # found bounds wider than this × the matched scale: use the match


def plan(cfg: FitConfig, *, epsilon: float, delta: float) -> dict[str, float]:
    lloyd_share = 1.0 - cfg.range_share - cfg.moments_share - cfg.init_share
    kinds = [("feature_ranges", cfg.range_share, 1), ("feature_moments", cfg.moments_share, 1),
             ("init_displacements", cfg.init_share, cfg.init_rounds),
             ("cluster_displacements", lloyd_share, cfg.rounds)]  # fmt: skip
    kinds = [kd for kd in kinds if kd[1] > 0]
    per = {name: share / count for name, share, count in kinds}
    total = sum(per.values())
    releases = [PlannedRelease(n, share=per[n] / total, count=c) for n, _, c in kinds]
    return calibrate(releases, epsilon=epsilon, delta=delta)


def fit(
    channel: Channel,
    schema: FeatureSchema,
    *,
    k: int,
    epsilon: float,
    delta: float,
    rng: np.random.Generator,
    cfg: FitConfig = FitConfig(),
) -> dict:
    z = plan(cfg, epsilon=epsilon, delta=delta)
    private = math.isfinite(epsilon)
    d = schema.dim
    # 1. ranges: one histogram per feature over public (geometric where unknown) bins
    edges = ranges.range_edges(schema, cfg.range_bins)
    mech = GaussianMechanism(z["feature_ranges"], {"counts": math.sqrt(d)})
    hist = channel.release(
        "feature_ranges", mech,
        lambda x: {"counts": feature_histograms(schema.to_model_space(x), edges)},
    )["counts"]  # fmt: skip
    sigma = channel.aggregate_sigmas(mech)["counts"]
    tail = 0.001 if private else 0.0
    lower, upper = ranges.bounds_from_histograms(hist, edges, sigma, tail=tail, widen=int(private))
    _, fallback, _ = ranges.histogram_scale(hist, edges, sigma, lower, upper)
    if private:  # too few customers for significant bins: a matched Gaussian shape
        mu, s_fit, amplitude = ranges.matched_location_scale(hist, edges)
        kept = ranges.significant_mass(hist, sigma)
        n_fit = float(np.median(amplitude))
        thin = (kept < 0.7 * n_fit) & schema.unknown().any(axis=1)
        # every feature counts every customer: the median total is a good n̂
        reliable = kept >= 0.95 * float(np.median(hist.sum(axis=1)))
        # Quantiles of denoised mass cut thin tails (a share that is 0 for most customers):
        # unless the histogram is well resolved, the bounds hold μ ± 4s of the matched shape.
        wide = ~thin & ~reliable
        lower = np.where(
            thin, mu - 6 * s_fit, np.where(wide, np.minimum(lower, mu - 4 * s_fit), lower)
        )
        upper = np.where(
            thin, mu + 6 * s_fit, np.where(wide, np.maximum(upper, mu + 4 * s_fit), upper)
        )
        fallback = np.where(thin, s_fit, fallback)
    else:
        reliable = None
    lower, upper = ranges.shrink_bounds(
        lower, upper, schema, keep_public=cfg.keep_public, reliable=reliable
    )
    # 2. moments (and the Gram matrix for a projection)
    project = d > cfg.project_above
    mech = GaussianMechanism(
        z["feature_moments"], standardize.moments_sensitivities(d, gram=project),
        standardize.moments_shares(gram=project),
    )  # fmt: skip
    moments = channel.release(
        "feature_moments", mech,
        lambda x: clipped_moments(to_unit(schema.to_model_space(x), lower, upper), gram=project),
    )  # fmt: skip
    sigma_second = channel.aggregate_sigmas(mech)["square"]
    fallback = np.maximum(fallback, 1e-9)
    scaling = standardize.scaling_from_moments(
        moments, lower, upper, names=schema.names, log=schema.log,
        sigma_second=sigma_second, fallback_scale=fallback,
    )  # fmt: skip
    n_hat = max(float(moments["count"][0]), 1.0)
    basis = variances = None
    if project:
        basis, variances = standardize.projection_from_moments(moments, scaling, min(k, d))
    # The found bounds only bound the moments' sensitivity; displacement clipping bounds
    # every later release, so the clustering itself clips only to the schema's known bounds
    # (a found bound that cuts a cluster would move its centre).
    known_lo, known_hi = schema.model_bounds()
    scaling = replace(scaling, lower=tuple(np.nan_to_num(known_lo, nan=-np.inf)),
                      upper=tuple(np.nan_to_num(known_hi, nan=np.inf)))  # fmt: skip
    # 3. initialization: over-complete candidate cells, then weighted k-means++
    dist_edges = lloyd.distance_edges(d)
    r0 = cfg.init_radius * math.sqrt(d)
    probe = _displacement_mechanism(z["init_displacements"], r0, d, cfg)
    sigma_sums = channel.aggregate_sigmas(probe)["sums"]
    m = init_mod.candidate_count(
        n_hat, k, cfg.min_cell_sigmas * sigma_sums, most=cfg.max_candidates_per_k * k
    )
    cells = init_mod.gaussian_candidates(m, d, rng, basis=basis, variances=variances)
    history = []
    radius = r0
    for _ in range(cfg.init_rounds):
        agg, sig = _displacement_round(
            channel, "init_displacements", scaling, schema, cells, radius, z, d, cfg, dist_edges
        )
        min_count = max(cfg.min_count_sigmas * sig["counts"], 1.0)
        cells, kept = lloyd.displacement_update(
            cells, agg["sums"], agg["counts"], min_count=min_count, max_step=radius
        )
        radius = _next_radius(agg, sig, dist_edges, 0.95, cap=r0)
        history.append({"task": "init", "cells": m, "kept": int(kept.sum()), "radius": radius})
    centres = init_mod.seed_from_cells(cells, agg["counts"], k, min_count=min_count, rng=rng)
    # 4. Lloyd rounds with displacement clipping; radius from the last distance histogram
    radius = min(radius * 1.5, cfg.radius_cap * math.sqrt(d))
    sizes = np.zeros(k)
    for round_no in range(1, cfg.rounds + 1):
        agg, sig = _displacement_round(
            channel,
            "cluster_displacements",
            scaling,
            schema,
            centres,
            radius,
            z,
            d,
            cfg,
            dist_edges,
        )
        min_count = max(cfg.min_count_sigmas * sig["counts"], 1.0)
        centres, kept = lloyd.displacement_update(
            centres, agg["sums"], agg["counts"], min_count=min_count, max_step=radius
        )
        sizes = agg["counts"]
        history.append(
            {"task": "lloyd", "round": round_no, "radius": radius, "empty": int((~kept).sum())}
        )
        radius = _next_radius(agg, sig, dist_edges, cfg.radius_quantile, cap=radius)
    assessment = noise_report.assess_noise(
        sizes, sigma_sums=sig["sums"], sigma_counts=sig["counts"], dim=d,
        spread=noise_report.rms_distance(agg["distances"], dist_edges),
        noise=channel.noise, merchants=channel.merchants,
    )  # fmt: skip
    return {"scaling": scaling, "centres": centres, "sizes": sizes, "history": history,
            "sigma_sums": sig["sums"], "assessment": assessment}  # fmt: skip


def _next_radius(agg, sig, edges, q: float, *, cap: float) -> float:
    """The ``q`` distance quantile, never above ``cap``: a radius only shrinks, since
    centres only get closer to their customers (and a noisy histogram's tail is noise)."""
    return min(
        max(lloyd.distance_quantile(agg["distances"], edges, sig["distances"], q), 1e-6), cap
    )


def _displacement_mechanism(z: float, radius: float, d: int, cfg: FitConfig) -> GaussianMechanism:
    s = sums_share(d) * (1 - cfg.distance_share)
    return GaussianMechanism(
        z, {"sums": radius, "counts": 1.0, "distances": 1.0},
        {"sums": s, "counts": 1 - s - cfg.distance_share, "distances": cfg.distance_share},
    )  # fmt: skip


def _displacement_round(channel, name, scaling, schema, centres, radius, z, d, cfg, dist_edges):
    mech = _displacement_mechanism(z[name], radius, d, cfg)

    def statistic(x: np.ndarray) -> dict:
        return displacement_statistics(
            scaling.transform(x), centres, radius=radius, distance_edges=dist_edges
        )

    agg = channel.release(name, mech, statistic)
    return agg, channel.aggregate_sigmas(mech)
