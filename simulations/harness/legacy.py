"""Today's fit (server/segmentation.py on main) replayed over a harness ``Channel``.

Same releases, same sensitivities, same shares and post-processing (``simulations/harness/legacy_kmeans.py``):
128 histogram bins over the declared ranges (asinh-spaced when wider than 1e4), 20·k
candidates from the noisy marginals, one initialization round, up to 4 Lloyd rounds with
early stopping. Used to check that the harness reproduces the apps' figures.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from fedseg.client.statistics import cluster_statistics, feature_histograms
from fedseg.privacy.accounting import PlannedRelease, calibrate
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.releases import sums_share
from fedseg.privacy.scaling import FeatureScaling
from fedseg.simulations.harness import legacy_kmeans as kmeans
from fedseg.simulations.harness.channel import Channel

GENERIC = 1e6  # client/feature_specs.py:generic_spec


def declared_ranges(schema: FeatureSchema) -> tuple[np.ndarray, np.ndarray]:
    """What a merchant declares today: known bounds, else the generic [-1e6, 1e6]."""
    lo, hi = schema.model_bounds()
    return np.where(np.isnan(lo), -GENERIC, lo), np.where(np.isnan(hi), GENERIC, hi)


def legacy_plan(*, epsilon: float, delta: float, rounds: int = 4) -> dict[str, float]:
    kinds = [("cluster_stats", 0.75, rounds), ("init_cluster_stats", 0.2, 1),
             ("feature_histograms", 0.05, 1)]  # fmt: skip
    per = {name: share / count for name, share, count in kinds}
    total = sum(per.values())
    plan = [PlannedRelease(n, share=per[n] / total, count=c) for n, _, c in kinds]
    return calibrate(plan, epsilon=epsilon, delta=delta)


def legacy_fit(
    channel: Channel,
    schema: FeatureSchema,
    *,
    k: int,
    epsilon: float,
    delta: float,
    rng: np.random.Generator,
    rounds: int = 4,
    bins: int = 128,
) -> dict:
    z = legacy_plan(epsilon=epsilon, delta=delta, rounds=rounds)
    private = math.isfinite(epsilon)
    lower, upper = declared_ranges(schema)
    edges = kmeans.histogram_edges(lower, upper, bins)
    d = schema.dim
    log = schema.log
    lo_clip, hi_clip = lower, upper

    def model_space(x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=np.float64)
        mask = np.asarray(log)
        out[:, mask] = np.log1p(np.maximum(out[:, mask], 0.0))
        return out

    mech = GaussianMechanism(z["feature_histograms"], {"counts": math.sqrt(d)})
    counts = channel.release(
        "feature_histograms", mech, lambda x: {"counts": feature_histograms(model_space(x), edges)}
    )["counts"]
    sigma = channel.aggregate_sigmas(mech)["counts"] if private else 0.0
    scaling = kmeans.scaling_from_histograms(
        counts, edges, names=schema.names, log=log,
        quantiles=(0.001, 0.999) if private else (0.0, 1.0), noise_sigma=sigma,
    )  # fmt: skip
    del lo_clip, hi_clip
    scaling = replace(scaling, radius=scaling.box_radius())
    hist = kmeans.denoise_histograms(counts, sigma)
    candidates = kmeans.sample_candidates(hist, edges, scaling, 20 * k, rng)
    agg, min_count = _cluster_round(channel, "init_cluster_stats", scaling, candidates, z)
    centres = kmeans.seed_centres(agg["sums"], agg["counts"], k, min_count=min_count, rng=rng)
    box = scaling.box()
    history = []
    for round_no in range(1, rounds + 1):
        agg, min_count = _cluster_round(channel, "cluster_stats", scaling, centres, z)
        new, kept = kmeans.update_centres(
            centres, agg["sums"], agg["counts"], min_count=min_count, box=box
        )
        movement = float(np.max(np.linalg.norm(new - centres, axis=1)))
        centres, sizes = new, agg["counts"]
        history.append({"round": round_no, "movement": movement, "empty": int((~kept).sum())})
        noise = agg["sigma_sums"] * math.sqrt(d) / max(float(np.min(sizes)), 1.0)
        if private and round_no >= 3 and movement < noise:
            break
    return {"scaling": scaling, "centres": centres, "sizes": sizes, "history": history}


def _cluster_round(channel: Channel, name: str, scaling: FeatureScaling, centres, z):
    share = sums_share(scaling.dim)
    mech = GaussianMechanism(
        z[name], {"sums": scaling.radius, "counts": 1.0}, {"sums": share, "counts": 1 - share}
    )

    def statistic(x: np.ndarray) -> dict:
        sums, counts = cluster_statistics(scaling.transform(x), centres)
        return {"sums": sums, "counts": counts}

    agg = channel.release(name, mech, statistic)
    sigmas = channel.aggregate_sigmas(mech)
    agg["sigma_sums"] = sigmas["sums"]
    return agg, max(3.0 * sigmas["counts"], 1.0)
