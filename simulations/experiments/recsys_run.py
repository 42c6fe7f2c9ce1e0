"""Researcher-side wiring of the recommender into a simulation: settings and evaluation.

Leave-last-out needs the held-out item kept out of everything merchants release, so a
recommender simulation that will be evaluated sets ``sim-holdout-last`` (simulation only:
each merchant drops every customer's last item before building histories). The evaluator
rebuilds exactly the histories the merchants used (same files, same simulation pseudonyms,
segments from the published model), takes the dropped items as the test items and scores
with the published `RecommenderModel`: HR@10 / NDCG@10 against 99 sampled negatives
(seeded) and full-ranking HR@10 (docs/contract.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fedseg.client.features import customer_features
from fedseg.client.loading import load_merchant_table
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.server.model import SegmentModel

if TYPE_CHECKING:
    from fedseg.client.recommender.histories import CustomerHistories

HOLDOUT_KEY = "sim-holdout-last"
MAX_EVALUATED = 20_000  # customers scored (a seeded sample above this)


def recommender_settings(data_dir: Path, run_config: dict[str, Any], *, evaluate: bool) -> dict:
    """Run-config additions for a recommender run: the catalogue, and the hold-out to evaluate."""
    if not _on(run_config.get("recommender", False)):
        return {}
    extra: dict[str, Any] = {}
    if "items" not in run_config and (data_dir / "items.csv").exists():
        extra["items"] = str(data_dir / "items.csv")
    if evaluate and HOLDOUT_KEY not in run_config:
        extra[HOLDOUT_KEY] = True
    return extra


def recommender_evaluation(
    model: SegmentModel, data_dir: Path, merchant_files: list[Path], run_config: dict, *, seed: int
) -> dict[str, Any]:
    """{"recommender": {recall_at_20, ndcg_at_10_full (headline), hr_at_10, ndcg_at_10
    (sampled), ..., baselines}}, or {} when not applicable.

    Only a run whose merchants held out the last item can be evaluated honestly.
    """
    published = model.extras.get("recommender")
    if published is None or not _on(run_config.get(HOLDOUT_KEY, False)):
        return {}
    # Imported here: the recommender modules load torch and scipy (seconds).
    from fedseg.privacy.published.recommender import load_recommender
    from fedseg.simulations.experiments import recsys_eval

    recommender = load_recommender(published)
    catalogue = [str(item) for item in published["item_ids"]]
    parts = [
        recsys_eval.leave_last_out(part)
        for part in merchant_histories(
            model, merchant_files, catalogue, seed=seed, as_of=run_config.get("as-of")
        )
    ]
    train = recsys_eval.pool([part for part, _ in parts])
    test = np.concatenate([held for _, held in parts])
    rng = np.random.default_rng([max(seed, 0), 6])
    tested = np.flatnonzero(test >= 0)
    if len(tested) > MAX_EVALUATED:
        keep = np.zeros(len(test), dtype=bool)
        keep[rng.choice(tested, MAX_EVALUATED, replace=False)] = True
        test = np.where(keep, test, -1)
    negatives = recsys_eval.sample_negatives(train, test, len(catalogue), rng)

    def metrics(score: recsys_eval.ScoreFn) -> dict[str, float]:
        return recsys_eval.ranking_metrics(score, train, test, negatives)

    figures = metrics(
        lambda positions: recommender.scores(
            [train.items[p] for p in positions], train.segments[positions]
        )
    )
    figures.update(
        evaluated_customers=int((test >= 0).sum()),
        kind=published.get("kind", "dp-ease"),
        gram_items=len(getattr(recommender, "item_index", ())),
        components=int(getattr(recommender, "vectors", np.zeros((0, 0))).shape[1]),
        content_weight=getattr(recommender, "content_weight", 0.0),
        lift_strength=getattr(recommender, "lift_strength", 0.0),
        baselines=_baselines(
            metrics, [part for part, _ in parts], train, (model.k, len(catalogue)), run_config, rng
        ),
    )
    return {"recommender": figures}


def _baselines(metrics, parts, train, shape, run_config, rng) -> dict[str, dict[str, float]]:
    """Global and per-segment popularity on the same split, segments and negatives; the
    per-segment one also with user-level DP at the recommender's share of the run's ε."""
    from fedseg.server.config import SegmentationConfig
    from fedseg.simulations.experiments import recsys_eval

    cfg = SegmentationConfig.from_run_config(run_config)
    k, n_items = shape
    counts = np.zeros((k, n_items))
    for items, segment in zip(train.items, train.segments, strict=True):
        counts[segment, items] += 1
    z = recsys_eval.segment_popularity_noise(
        epsilon=cfg.epsilon, delta=cfg.delta, recommender_share=cfg.recommender.share
    )
    private = recsys_eval.dp_segment_popularity(
        parts, n_items=n_items, n_segments=k, noise_multiplier=z, rng=rng,
        distributed=cfg.noise == "distributed",
    )  # fmt: skip
    ease = recsys_eval.fit_ease(train, n_items)  # non-private, centralized: the reference
    return {
        "ease": metrics(recsys_eval.ease_scorer(ease, train)),
        "global_popularity": metrics(recsys_eval.global_popularity_scorer(train, n_items)),
        "segment_popularity": metrics(
            recsys_eval.segment_popularity_scorer(counts, train.segments)
        ),
        "segment_popularity_dp": metrics(lambda p: private.scores(train.segments[p])),
    }


def merchant_histories(
    model: SegmentModel,
    merchant_files: list[Path],
    catalogue: list[str],
    *,
    seed: int,
    as_of: str | None = None,
) -> list[CustomerHistories]:
    """Each merchant's full histories (before the hold-out), segments from the model."""
    from fedseg.client.recommender.histories import build_histories
    from fedseg.client.recommender.tasks import string_ids

    index = {item: position for position, item in enumerate(catalogue)}
    parts = []
    for path in merchant_files:
        pseudonymizer = Pseudonymizer.for_simulation(path.stem, max(seed, 0))
        features, _, _ = customer_features(
            path, pseudonymizer=pseudonymizer, schema=model.schema, as_of=as_of
        )
        events, report = load_merchant_table(path, pseudonymizer=pseudonymizer, as_of=as_of)
        if report.kind != "events":
            raise ValueError(f"{path}: a features table has no item histories to evaluate")
        labels = model.predict(features[list(model.features)].to_numpy(dtype=np.float64))
        segment_of = dict(zip(features.index.astype(str), labels.tolist(), strict=True))
        events = string_ids(events)
        parts.append(build_histories(events, index, segment_of))
    return parts


def _on(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
