"""The run's privacy budget: one noise multiplier per kind of release, fixed up front, and
the plan every merchant accepts before anything is released."""

from __future__ import annotations

from fedseg.privacy import releases
from fedseg.privacy.accounting import PlannedRelease, Release, calibrate
from fedseg.privacy.plan import RunPlan
from fedseg.server.config import DPSGD_SAMPLING_RATE, SegmentationConfig

NON_PRIVATE_ROUNDS = 30


def planned_kinds(
    cfg: SegmentationConfig, *, statistics: bool = True, init: bool = True,
    projected: bool = False,
) -> list[tuple[str, float, int]]:  # fmt: skip
    """(release kind, share of the run's budget, count) of every release the run makes.

    A warm start skips the feature statistics (ranges, moments) and the initialization;
    reusing an earlier model's statistics (``statistics-from``) skips the statistics. Their
    shares go to the rest. An initialization in a DP projection (``projected``) has one
    more round within its share, splitting its cells (server/init.py ``split_cells``).
    """
    seg = cfg.segmentation_share
    kinds = [(releases.LLOYD, cfg.lloyd_share, lloyd_rounds(cfg))]
    if init:
        kinds.append((releases.INIT, seg * cfg.shares.init, cfg.init_rounds + int(projected)))
    if statistics:
        kinds.append((releases.RANGES, seg * cfg.shares.ranges, 1))
        kinds.append((releases.MOMENTS, seg * cfg.shares.moments, 1))
        if cfg.shares.square_norm > 0:
            kinds.append((releases.SQUARE_NORM, seg * cfg.shares.square_norm, 1))
    if cfg.shares.profiles > 0:
        kinds.append((releases.PROFILES, seg * cfg.shares.profiles, 1))
    recommender = cfg.recommender
    if recommender.share > 0 and recommender.model == "dpsgd":  # every local step
        steps = recommender.fedavg_rounds * recommender.dpsgd_steps
        kinds.append((releases.DPSGD, recommender.share, steps))
    elif recommender.share > 0:  # content check, then popularity and Gram in equal halves
        check = recommender.share * recommender.content_share
        half = (recommender.share - check) / 2
        kinds += [(releases.POPULARITY, half, 1), (releases.GRAM, half, 1)]
        if check > 0:
            kinds.append((releases.CONTENT_CHECK, check, 1))
    if cfg.lifetime.share > 0:  # the cell histograms, then the per-segment sums, in halves
        half = cfg.lifetime.share / 2
        kinds += [(releases.LIFETIME_HISTOGRAMS, half, 1), (releases.LIFETIME_SUMS, half, 1)]
    return kinds


def lloyd_rounds(cfg: SegmentationConfig) -> int:
    """Lloyd rounds planned: ``rounds``, or up to NON_PRIVATE_ROUNDS at ε = ∞ (noise-free
    rounds cost nothing, so the fit runs to convergence like scikit-learn's)."""
    return cfg.rounds if cfg.private else max(cfg.rounds, NON_PRIVATE_ROUNDS)


def noise_plan(
    cfg: SegmentationConfig, *, statistics: bool = True, init: bool = True,
    projected: bool = False,
) -> dict[str, float]:  # fmt: skip
    """Noise multiplier per release kind, calibrated before anything is released."""
    kinds = planned_kinds(cfg, statistics=statistics, init=init, projected=projected)
    # calibrate() wants per-release shares summing to 1; ρ of a kind is count × share.
    per_release = {name: share / count for name, share, count in kinds}
    total = sum(per_release.values())
    plan = [
        PlannedRelease(name, share=per_release[name] / total, count=c, sampling_rate=_rate(name))
        for name, _, c in kinds
    ]
    return calibrate(plan, epsilon=cfg.epsilon, delta=cfg.delta)


def run_plan(
    cfg: SegmentationConfig, *, statistics: bool = True, init: bool = True,
    projected: bool = False,
) -> RunPlan:  # fmt: skip
    """The plan the merchants accept: every planned release with its noise multiplier."""
    parts = {"statistics": statistics, "init": init, "projected": projected}
    z = noise_plan(cfg, **parts)
    planned = tuple(
        Release(name, z[name], count=count, sampling_rate=_rate(name))
        for name, _, count in planned_kinds(cfg, **parts)
    )
    return RunPlan(
        planned,
        noise=cfg.noise,
        secure=cfg.secagg.enabled,
        dropout_tolerance=cfg.secagg.dropout_tolerance,
        collusion=cfg.secagg.collusion,
    )


def _rate(name: str) -> float | None:
    return DPSGD_SAMPLING_RATE if name == releases.DPSGD else None
