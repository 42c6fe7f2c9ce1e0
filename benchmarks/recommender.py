"""Recommender benchmark: federated DP recommenders vs baselines, side by side.

MovieLens-100k (10 ZIP regions) and the synthetic federation (100k customers).
Leave-last-out; HR@10 / NDCG@10 with 1 positive + 99 sampled negatives and
full-ranking HR@10. Segments: ML-100k uses a NON-PRIVATE sklearn KMeans on
per-user genre shares (stand-in for the DP K-means, whose budget is not
counted here); synthetic uses the true persona. ε below is the recommender's
own user-level budget per merchant (δ=1e-6): 20% popularity release, 80% DP-SGD.
Usage: python benchmarks/recommender.py [--quick]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from fedseg.client.recommender import (
    CustomerHistories,
    LocalTrainingConfig,
    build_histories,
    init_parameters,
    model_from_parameters,
    score_customers,
    segment_item_counts,
    train_local,
)
from fedseg.privacy.accounting import PlannedRelease, Release, calibrate
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.server.recommender import aggregate_segment_popularity, fedavg, suppression_threshold
from fedseg.simulations import recsys_eval as ev
from fedseg.simulations.datasets import load_movielens_100k
from fedseg.simulations.synthetic import generate_federation
from sklearn.cluster import KMeans

DELTA, CAP_L, POP_SHARE = 1e-6, 20, 0.2
OUT = Path(__file__).parent / "results" / "recommender.json"


def merchant_histories(fed, segment_of):
    """Per-merchant leave-last-out (train, test) and the item index."""
    index = {item: k for k, item in enumerate(fed.items["item_id"])}
    parts = {}
    for merchant_id, events in fed.merchants.items():
        parts[merchant_id] = ev.leave_last_out(
            build_histories(events, index, segment_of(merchant_id))
        )
    return parts, len(index)


def pooled(parts):
    trains = [train for train, _ in parts.values()]
    merged = CustomerHistories(
        np.concatenate([np.asarray(t.user_ids, dtype=object) for t in trains]),
        tuple(h for t in trains for h in t.items),
        np.concatenate([t.segments for t in trains]),
    )
    return merged, np.concatenate([test for _, test in parts.values()])


def dp_popularity(parts, n_items, k, z, rng):
    summed = sum(
        segment_item_counts(
            train,
            rng,
            n_items=n_items,
            n_segments=k,
            max_items_per_customer=CAP_L,
            noise_multiplier=z,
        )["counts"]
        for train, _ in parts.values()
    )
    threshold = suppression_threshold(
        noise_multiplier=z, max_items_per_customer=CAP_L, n_merchants=len(parts)
    )
    return aggregate_segment_popularity({"counts": summed}, threshold=threshold)


def federated_model(parts, n_items, k, spec, z, rng):
    params = init_parameters(n_items, k, spec["dim"], torch.Generator().manual_seed(0))
    config = LocalTrainingConfig(
        epochs=spec["epochs"],
        sampling_rate=spec["q"],
        learning_rate=spec["lr"],
        holdout_fraction=spec["holdout"],
    )
    # Every merchant runs the same plan, so (parallel composition) one ledger stands for each
    # merchant's: charged once up front for all rounds, refusing the run if it exceeds the cap.
    ledger = PrivacyLedger(None, epsilon_cap=spec.get("cap", np.inf), delta=DELTA)
    if z is not None:
        steps = spec["rounds"] * config.steps
        ledger.charge(
            Release("recommender_dpsgd", z, count=steps, sampling_rate=config.sampling_rate)
        )
    for _ in range(spec["rounds"]):
        summed = {}
        for train, _ in parts.values():
            local = train_local(
                train, params, config, rng, noise_multiplier=z, max_grad_norm=spec["clip"]
            )
            summed = {n: summed.get(n, 0) + local[n].astype(np.float64) for n in local}
        params = fedavg(summed, n_clients=len(parts))
    spent = ledger.spent()
    model = model_from_parameters(params)
    return (
        lambda train: (
            lambda pos: score_customers(model, [train.items[p] for p in pos], train.segments[pos])
        )
    ), spent


def noise_plan(epsilon, spec):
    steps = (
        spec["rounds"] * LocalTrainingConfig(epochs=spec["epochs"], sampling_rate=spec["q"]).steps
    )
    plan = [
        PlannedRelease("popularity", share=POP_SHARE),
        PlannedRelease("dpsgd", share=1 - POP_SHARE, count=steps, sampling_rate=spec["q"]),
    ]
    return calibrate(plan, epsilon=epsilon, delta=DELTA)


def evaluate(name, fed, segment_of, k, spec, epsilons, eval_users, rng):
    t0 = time.perf_counter()
    parts, n_items = merchant_histories(fed, segment_of)
    train, test = pooled(parts)
    if eval_users < len(train):
        keep = np.zeros(len(train), dtype=bool)
        keep[rng.choice(len(train), eval_users, replace=False)] = True
        test = np.where(keep, test, -1)
    negatives = ev.sample_negatives(train, test, n_items, rng)
    run = lambda fn: ev.ranking_metrics(fn, train, test, negatives)  # noqa: E731
    seg_counts = np.zeros((k, n_items))
    for items, s in zip(train.items, train.segments, strict=True):
        seg_counts[s, items] += 1
    rows = {
        "random": run(ev.random_scorer(n_items, rng)),
        "global popularity": run(ev.global_popularity_scorer(train, n_items)),
        "segment popularity": run(ev.segment_popularity_scorer(seg_counts, train.segments)),
        "EASE (central, λ=500)": run(ev.ease_scorer(ev.fit_ease(train, n_items, 500.0), train)),
    }
    scorer, _ = federated_model(parts, n_items, k, spec, None, rng)
    rows["federated model (non-private)"] = run(scorer(train))
    for epsilon in epsilons:
        z = noise_plan(epsilon, spec)
        popularity = dp_popularity(parts, n_items, k, z["popularity"], rng)
        rows[f"DP segment popularity ε={epsilon:g}"] = run(
            lambda pos, p=popularity: p.scores(train.segments[pos])
        )
        scorer, spent = federated_model(parts, n_items, k, spec, z["dpsgd"], rng)
        rows[f"federated model ε={epsilon:g}"] = {**run(scorer(train)), "dpsgd_epsilon": spent}
    print(
        f"\n{name}: {len(train)} customers, {len(parts)} merchants, {n_items} items, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(f"{'method':38s} {'HR@10':>7s} {'NDCG@10':>8s} {'HR@10 full':>11s}")
    for method, m in rows.items():
        print(
            f"{method:38s} {m['hr_at_10']:7.3f} {m['ndcg_at_10']:8.3f} {m['hr_at_10_full']:11.3f}"
        )
    return rows


def movielens_segments(fed, k):
    events = __import__("pandas").concat(fed.merchants.values())
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
    ml_spec = {
        "dim": 32,
        "epochs": 1.0,
        "q": 0.2,
        "lr": 0.03,
        "holdout": 0.5,
        "clip": 1.0,
        "rounds": 8 if quick else 25,
    }
    results = {
        "movielens-100k": evaluate(
            "MovieLens-100k", ml, movielens_segments(ml, 8), 8, ml_spec, [8.0, 1.0], 10**9, rng
        )
    }
    users = 20_000 if quick else 100_000
    syn = generate_federation(users=users, merchants=20, seed=0)
    truth = syn.truth.groupby("merchant_id")
    seg = {m: dict(zip(t["user_id"], t["segment"], strict=True)) for m, t in truth}
    syn_spec = {
        "dim": 16,
        "epochs": 1.0,
        "q": 0.02,
        "lr": 0.01,
        "holdout": 0.5,
        "clip": 1.0,
        "rounds": 1 if quick else 2,
    }
    results["synthetic-100k"] = evaluate(
        "Synthetic", syn, seg.__getitem__, 5, syn_spec, [1.0], 10_000, rng
    )
    OUT.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
