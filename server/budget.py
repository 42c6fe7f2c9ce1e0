"""The run's privacy budget: one noise multiplier per kind of release, fixed up front."""

from __future__ import annotations

from fedseg.privacy.accounting import PlannedRelease, calibrate
from fedseg.server.config import DPSGD_SAMPLING_RATE, SegmentationConfig


def noise_plan(
    cfg: SegmentationConfig, *, histograms: bool = True, init: bool = True
) -> dict[str, float]:
    """Noise multiplier per release kind, calibrated before anything is released.

    A warm start skips both histograms and initialization; reusing an earlier model's
    statistics (``statistics-from``) skips the histograms. Their shares go to the rest.
    """
    seg = cfg.segmentation_share
    kinds = [("cluster_stats", cfg.lloyd_share, cfg.rounds)]
    if init:
        kinds.append(("init_cluster_stats", seg * cfg.init_share, cfg.init_rounds))
    if histograms:
        kinds.append(("feature_histograms", seg * cfg.histogram_share, 1))
        if cfg.square_norm_share > 0:
            kinds.append(("square_norm", seg * cfg.square_norm_share, 1))
    rates = {}
    if cfg.recommender_share > 0 and cfg.recommender_model == "dpsgd":  # every local step
        kinds.append(
            ("recommender_dpsgd", cfg.recommender_share, cfg.fedavg_rounds * cfg.dpsgd_steps)
        )
        rates["recommender_dpsgd"] = DPSGD_SAMPLING_RATE
    elif cfg.recommender_share > 0:  # content check, then popularity and Gram in equal halves
        check = cfg.recommender_share * cfg.content_share
        half = (cfg.recommender_share - check) / 2
        kinds += [("recommender_item_popularity", half, 1), ("recommender_gram", half, 1)]
        if check > 0:
            kinds.append(("recommender_content_check", check, 1))
    # calibrate() wants per-release shares summing to 1; ρ of a kind is count × share.
    per_release = {name: share / count for name, share, count in kinds}
    total = sum(per_release.values())
    plan = [
        PlannedRelease(
            name, share=per_release[name] / total, count=c, sampling_rate=rates.get(name)
        )
        for name, _, c in kinds
    ]
    return calibrate(plan, epsilon=cfg.epsilon, delta=cfg.delta)
