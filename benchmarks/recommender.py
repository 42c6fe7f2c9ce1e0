"""Recommender benchmark: federated DP-EASE vs baselines, side by side.

MovieLens-100k (10 ZIP regions) and the synthetic federation (100k customers, 10 merchants).
Leave-last-out; headline: full-ranking Recall@20 and NDCG@10 (the held-out item against every
unseen item); secondary: HR@10 / NDCG@10 with 1 positive + 99 sampled negatives. Segments: ML-100k uses a NON-PRIVATE sklearn KMeans (k=8) on per-user genre shares
as a stand-in for the lead's DP K-means; synthetic uses the true personas.

Budget: ε is the run's total user-level ε per merchant (δ=1e-6). It is split zCDP-style
with `calibrate`: 10% for the segmentation (stand-in, charged to each merchant's ledger
as one Gaussian release so the total is honest), 90% for the recommender, of which
POPULARITY_SHARE for the popularity release and the rest for the Gram release.
Noise: "secagg" = distributed noise (each merchant adds 1/M of the variance, the secure
sum carries sigma once); "local" = every merchant adds the full sigma.
Usage: python benchmarks/recommender.py [--quick]   (about 2 minutes on 2 cores)
The DP-SGD neural path (client/recommender/dpsgd.py) is not in this table: measured earlier
at 0.513 (non-private), 0.179 (ε=8), 0.111 (ε=1) on MovieLens; see docs/recommender.md.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fedseg.client.recommender import (
    build_histories,
    gram_statistics,
    popularity_statistics,
)
from fedseg.client.recommender.check import content_gain_statistics
from fedseg.privacy.accounting import PlannedRelease, Release, calibrate
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.server.config import RecommenderConfig
from fedseg.server.recommender import (
    choose_items,
    fit_recommender,
)
from fedseg.server.recommender.content import catalogue_attributes, choose_candidate
from fedseg.server.recommender.rounds import (
    MAX_GRAM_ITEMS,
    POPULARITY_WEIGHT,
    SEGMENT_WEIGHT,
    scorer_candidates,
)
from fedseg.simulations.data.datasets import load_movielens_100k
from fedseg.simulations.data.synthetic import generate_federation
from fedseg.simulations.experiments import recsys_eval as ev
from sklearn.cluster import KMeans

DELTA = 1e-6
SEGMENTATION_SHARE, POPULARITY_SHARE, SEGMENT_SHARE = 0.1, 0.5, 0.0
CONTENT_SHARE = RecommenderConfig().content_share
OUT = Path(__file__).parent / "results" / "recommender.json"


def merchant_histories(fed, segment_of):
    """Per-merchant leave-last-out (train, test) and the catalogue size."""
    index = {item: k for k, item in enumerate(fed.items["item_id"])}
    parts = {}
    for merchant_id, events in fed.merchants.items():
        histories = build_histories(events, index, segment_of(merchant_id))
        parts[merchant_id] = ev.leave_last_out(histories)
    return parts, len(index)


def pooled(parts):
    trains = [train for train, _ in parts.values()]
    return ev.pool(trains), np.concatenate([test for _, test in parts.values()])


def budget(epsilon):
    """Noise multipliers of the four releases (zCDP shares of the run's total ε)."""
    rec = 1.0 - SEGMENTATION_SHARE
    plan = [
        PlannedRelease("segmentation", share=SEGMENTATION_SHARE),
        PlannedRelease("popularity", share=rec * (1 - CONTENT_SHARE) * POPULARITY_SHARE),
        PlannedRelease("gram", share=rec * (1 - CONTENT_SHARE) * (1 - POPULARITY_SHARE)),
        PlannedRelease("content", share=rec * CONTENT_SHARE),
    ]
    return calibrate(plan, epsilon=epsilon, delta=DELTA)


def dp_ease(parts, n_items, k, epsilon, noise, rng, attributes=None):
    """Both rounds of DP-EASE over every merchant; returns (model, max merchant ε spent)."""
    private = np.isfinite(epsilon)
    z = (
        budget(epsilon)
        if private
        else dict.fromkeys(("segmentation", "popularity", "gram", "content"), 0.0)
    )
    m = len(parts)
    share = 1.0 / m if noise == "secagg" else 1.0
    spread = 1.0 if noise == "secagg" else np.sqrt(m)  # std of the SUM / sigma
    ledgers = {mid: PrivacyLedger(None, epsilon_cap=epsilon, delta=DELTA) for mid in parts}
    for ledger in ledgers.values():
        ledger.charge(Release("segmentation_stand_in", z["segmentation"]))
    summed = _summed(
        popularity_statistics(
            train,
            n_items=n_items,
            n_segments=k,
            noise_multiplier=z["popularity"],
            segment_share=SEGMENT_SHARE,
            noise_share=share,
            rng=rng,
            ledger=ledgers[mid],
        )
        for mid, (train, _) in parts.items()
    )
    overall_sigma = z["popularity"] / np.sqrt(1 - SEGMENT_SHARE) * spread
    items = choose_items(summed["overall"], sigma=overall_sigma, max_items=MAX_GRAM_ITEMS)
    gram = _summed(
        gram_statistics(
            train,
            item_index=items,
            noise_multiplier=z["gram"],
            n_segments=k,
            segment_weight=SEGMENT_WEIGHT,
            noise_share=share,
            normalize=private,
            rng=rng,
            ledger=ledgers[mid],
        )
        for mid, (train, _) in parts.items()
    )
    model = fit_recommender(
        {**summed, **gram},
        item_index=items,
        gram_sigma=z["gram"] * spread,
        n_segments=k,
        segment_weight=SEGMENT_WEIGHT,
        popularity_weight=POPULARITY_WEIGHT,
        attributes=attributes,
        content_weight=0.0,
    )
    if model.content is not None:  # round 3: the merchants' DP verdict on the scorers
        candidates = scorer_candidates(model)
        gains = _summed(
            content_gain_statistics(
                train,
                model,
                candidates,
                noise_multiplier=z["content"],
                noise_share=share,
                rng=rng,
                ledger=ledgers[mid],
            )
            for mid, (train, _) in parts.items()
        )["gain"]
        content_weight, lift_strength = choose_candidate(gains, candidates)
        model = replace(model, content_weight=content_weight, lift_strength=lift_strength)
    return model, max(ledger.spent() for ledger in ledgers.values())


def _summed(releases):
    total = {}
    for release in releases:
        for part, value in release.items():
            total[part] = total.get(part, 0.0) + value
    return total


def evaluate(name, fed, segment_of, k, epsilons, eval_users, rng):
    t0 = time.perf_counter()
    parts, n_items = merchant_histories(fed, segment_of)
    train, test = pooled(parts)
    if eval_users < len(train):
        keep = np.zeros(len(train), dtype=bool)
        keep[rng.choice(len(train), eval_users, replace=False)] = True
        test = np.where(keep, test, -1)
    negatives = ev.sample_negatives(train, test, n_items, rng)

    def run(score_fn, **extra):
        return {**ev.ranking_metrics(score_fn, train, test, negatives), **extra}

    def model_scorer(model):
        return lambda pos: model.scores([train.items[p] for p in pos], train.segments[pos])

    seg_counts = np.zeros((k, n_items))
    for items, s in zip(train.items, train.segments, strict=True):
        seg_counts[s, items] += 1
    rows = {
        "random": run(ev.random_scorer(n_items, rng)),
        "global popularity": run(ev.global_popularity_scorer(train, n_items)),
        "segment popularity": run(ev.segment_popularity_scorer(seg_counts, train.segments)),
        "EASE (central, λ=500)": run(ev.ease_scorer(ev.fit_ease(train, n_items, 500.0), train)),
    }
    attributes = catalogue_attributes(fed.items)
    for content, label in ((None, "EASE alone"), (attributes, "checked scorer")):
        model, _ = dp_ease(parts, n_items, k, np.inf, "secagg", rng, content)
        rows[f"federated {label}, non-private"] = run(
            model_scorer(model),
            gram_items=len(model.item_index),
            content_weight=model.content_weight,
            lift_strength=model.lift_strength,
        )
    for epsilon in epsilons:
        popularity = ev.dp_segment_popularity(
            [part for part, _ in parts.values()], n_items=n_items, n_segments=k, rng=rng,
            noise_multiplier=ev.segment_popularity_noise(
                epsilon=epsilon, delta=DELTA, recommender_share=1 - SEGMENTATION_SHARE
            ),
            distributed=True,
        )  # fmt: skip
        baseline = lambda pos, p=popularity: p.scores(train.segments[pos])  # noqa: E731
        rows[f"DP segment popularity (capped, secagg) ε={epsilon:g}"] = run(baseline)
        for noise, content in (("secagg", None), ("secagg", attributes), ("local", attributes)):
            model, spent = dp_ease(parts, n_items, k, epsilon, noise, rng, content)
            label = "EASE alone" if content is None else "checked scorer"
            gain, se = ev.paired_gain(
                ev.sampled_hits(model_scorer(model), test, negatives),
                ev.sampled_hits(baseline, test, negatives),
            )
            rows[f"DP {label}, {noise}, ε={epsilon:g}"] = run(
                model_scorer(model),
                gain_over_dp_segment_popularity=gain,
                gain_standard_error=se,
                epsilon_spent=spent,
                gram_items=len(model.item_index),
                components=int(model.vectors.shape[1]),
                content_weight=model.content_weight,
                lift_strength=model.lift_strength,
            )
    _print_table(name, rows, len(train), len(parts), n_items, time.perf_counter() - t0)
    return rows


def _print_table(name, rows, n_users, n_merchants, n_items, seconds):
    print(
        f"\n{name}: {n_users} customers, {n_merchants} merchants, {n_items} items, {seconds:.0f} s"
    )
    print(
        f"{'method':44s} {'R@20':>6s} {'NDCG@10':>7s} {'sHR@10':>6s} {'ε spent':>7s} "
        f"{'content w':>9s} {'lift κ':>6s} {'vs DP seg. pop. (±SE)':>22s}"
    )
    for method, m in rows.items():
        spent = f"{m['epsilon_spent']:7.3f}" if "epsilon_spent" in m else ""
        scorer = (
            f"{m['content_weight']:9.2f} {m['lift_strength']:6.0f}" if "lift_strength" in m else ""
        )
        gain = ""
        if "gain_standard_error" in m:
            gain = f"{m['gain_over_dp_segment_popularity']:+.3f} ± {m['gain_standard_error']:.3f}"
        print(
            f"{method:44s} {m['recall_at_20']:6.3f} {m['ndcg_at_10_full']:7.3f} {m['hr_at_10']:6.3f} "
            f"{spent:>7s} {scorer:>16s} {gain:>22s}"
        )


def movielens_segments(fed, k):
    """NON-PRIVATE stand-in for the DP K-means: KMeans on per-user genre shares."""
    events = pd.concat(fed.merchants.values())
    shares = events.pivot_table(
        index="user_id", columns="category", values="item_id", aggfunc="count", fill_value=0
    )
    shares = shares.div(shares.sum(axis=1), axis=0)
    labels = KMeans(k, n_init=4, random_state=0).fit_predict(shares.to_numpy())
    segment = dict(zip(shares.index, labels.astype(int), strict=True))
    return lambda merchant_id: segment


def main(quick: bool = False) -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    ml = load_movielens_100k(regions=10)
    results = {
        "settings": {
            "delta": DELTA,
            "segmentation_share": SEGMENTATION_SHARE,
            "popularity_share_of_recommender": POPULARITY_SHARE,
            "segment_share_of_popularity": SEGMENT_SHARE,
            "max_gram_items": MAX_GRAM_ITEMS,
            "segment_column_weight": SEGMENT_WEIGHT,
            "popularity_weight": POPULARITY_WEIGHT,
        },
        "movielens-100k": evaluate(
            "MovieLens-100k", ml, movielens_segments(ml, 8), 8, [8.0, 1.0], 10**9, rng
        ),
    }
    users = 20_000 if quick else 100_000
    syn = generate_federation(users=users, merchants=10, seed=0)
    truth = syn.truth.groupby("merchant_id")
    seg = {m: dict(zip(t["user_id"], t["segment"], strict=True)) for m, t in truth}
    results["synthetic"] = evaluate(
        f"Synthetic ({users} customers)", syn, seg.__getitem__, 5, [8.0, 1.0], 10**9, rng
    )
    OUT.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
