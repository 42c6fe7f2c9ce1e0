"""Recommender evaluation: leave-last-out splits, full-ranking Recall@20 / NDCG@10, baselines.

Protocol (fixed by docs/contract.md): each customer's last item is held out. The headline
ranks it against every item the customer has not seen (`recall_at_20`, `ndcg_at_10_full`,
and `hr_at_10_full`): sampled metrics can order methods differently from the full ranking
(Krichene & Rendle, KDD 2020). The secondary figures rank it against 99 sampled unseen
items (`hr_at_10`, `ndcg_at_10`), as earlier benchmarks did.
Ties count half, so a constant scorer gets chance-level numbers, not perfect ones.
Baselines (random, global and per-segment popularity, centralized EASE) take the
same inputs as the federated models so they run side by side in one benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from fedseg.client.recommender.check import sampled_rank
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.client.recommender.popularity import segment_item_counts
from fedseg.privacy.accounting import PlannedRelease, calibrate
from fedseg.server.recommender.popularity import (
    SegmentPopularity,
    aggregate_segment_popularity,
    suppression_threshold,
)
from scipy import sparse

ScoreFn = Callable[[np.ndarray], np.ndarray]
SEGMENT_POPULARITY_CAP = 20  # items per customer in the DP per-segment popularity baseline


def leave_last_out(histories: CustomerHistories) -> tuple[CustomerHistories, np.ndarray]:
    """Split off each customer's last item; -1 marks customers with one item (kept, not tested)."""
    train, test = [], np.full(len(histories), -1, dtype=np.int64)
    for position, history in enumerate(histories.items):
        if len(history) >= 2:
            train.append(history[:-1])
            test[position] = history[-1]
        else:
            train.append(history)
    return CustomerHistories(histories.user_ids, tuple(train), histories.segments), test


def sample_negatives(
    train: CustomerHistories,
    test_items: np.ndarray,
    n_items: int,
    rng: np.random.Generator,
    n_negatives: int = 99,
) -> np.ndarray:
    """`n_negatives` distinct items per customer, none seen in training nor the positive."""
    negatives = np.empty((len(train), n_negatives), dtype=np.int64)
    for position, history in enumerate(train.items):
        allowed = np.ones(n_items, dtype=bool)
        allowed[history] = False
        if test_items[position] >= 0:
            allowed[test_items[position]] = False
        candidates = np.flatnonzero(allowed)
        if len(candidates) < n_negatives:
            raise ValueError(
                f"customer at row {position} has fewer than {n_negatives} unseen items"
            )
        negatives[position] = rng.choice(candidates, size=n_negatives, replace=False)
    return negatives


def ranking_metrics(
    score_fn: ScoreFn,
    train: CustomerHistories,
    test_items: np.ndarray,
    negatives: np.ndarray,
    k: int = 10,
    chunk: int = 2048,
) -> dict[str, float]:
    """Full-ranking Recall@20, NDCG@10 and HR@k (headline) and sampled HR@k and NDCG@k over
    customers with a test item. One held-out item each, so Recall@20 is its hit rate in the
    top 20 of the full ranking."""
    tested = np.flatnonzero(test_items >= 0)
    hits, gains, full_hits, full_ranks = [], [], [], []
    for start in range(0, len(tested), chunk):
        positions = tested[start : start + chunk]
        scores = np.array(score_fn(positions), dtype=np.float64)
        positive = scores[np.arange(len(positions)), test_items[positions]]
        rank = sampled_rank(scores, test_items[positions], negatives[positions])
        hits.append(rank < k)
        gains.append(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0))
        for row, position in enumerate(positions):
            scores[row, train.items[position]] = -np.inf
        full_rank = (scores > positive[:, None]).sum(1) + 0.5 * (
            (scores == positive[:, None]).sum(1) - 1
        )
        full_hits.append(full_rank < k)
        full_ranks.append(full_rank)
    ranks = np.concatenate(full_ranks)
    return {
        "recall_at_20": float(np.mean(ranks < 20)),
        "ndcg_at_10_full": float(np.mean(np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0))),
        "hr_at_10": float(np.concatenate(hits).mean()),
        "ndcg_at_10": float(np.concatenate(gains).mean()),
        "hr_at_10_full": float(np.concatenate(full_hits).mean()),
    }


def sampled_hits(
    score_fn: ScoreFn,
    test_items: np.ndarray,
    negatives: np.ndarray,
    k: int = 10,
    chunk: int = 2048,
) -> np.ndarray:
    """Per tested customer (in order), 1.0 if the positive ranks in the top k of the sample."""
    tested = np.flatnonzero(test_items >= 0)
    hits = []
    for start in range(0, len(tested), chunk):
        positions = tested[start : start + chunk]
        scores = np.array(score_fn(positions), dtype=np.float64)
        hits.append(sampled_rank(scores, test_items[positions], negatives[positions]) < k)
    return np.concatenate(hits).astype(np.float64) if hits else np.zeros(0)


def paired_gain(hits: np.ndarray, baseline_hits: np.ndarray) -> tuple[float, float]:
    """Mean per-customer difference in hits and its standard error (same customers and
    negatives for both, so the pairing removes most of the sampling noise)."""
    difference = np.asarray(hits, float) - np.asarray(baseline_hits, float)
    if len(difference) < 2:
        raise ValueError("a paired comparison needs at least two customers")
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def interaction_matrix(histories: CustomerHistories, n_items: int) -> np.ndarray:
    """Dense 0/1 customer x item matrix (float32)."""
    matrix = np.zeros((len(histories), n_items), dtype=np.float32)
    for position, history in enumerate(histories.items):
        matrix[position, history] = 1.0
    return matrix


def item_gram(histories: CustomerHistories, n_items: int) -> np.ndarray:
    """XᵀX of the 0/1 customer x item matrix, via a sparse matrix (scales to 10⁵ customers)."""
    lengths = [len(h) for h in histories.items]
    rows = np.repeat(np.arange(len(histories)), lengths)
    matrix = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, np.concatenate(histories.items))),
        shape=(len(histories), n_items),
    )
    return (matrix.T @ matrix).toarray()


def pool(parts: Sequence[CustomerHistories]) -> CustomerHistories:
    """Several merchants' histories as one population (evaluation only)."""
    return CustomerHistories(
        np.concatenate([np.asarray(p.user_ids, dtype=object) for p in parts]),
        tuple(h for p in parts for h in p.items),
        np.concatenate([p.segments for p in parts]),
    )


def dp_segment_popularity(
    parts: Sequence[CustomerHistories],
    *,
    n_items: int,
    n_segments: int,
    noise_multiplier: float,
    rng: np.random.Generator,
    distributed: bool,
    cap: int = SEGMENT_POPULARITY_CAP,
) -> SegmentPopularity:
    """The seed paper's per-segment popularity with user-level DP, as a baseline.

    Each merchant's capped (≤ `cap` items per customer) noisy counts, summed and suppressed
    below noise. `distributed`: one noise draw on the sum, as secure aggregation with
    distributed noise would give; else every merchant adds its own (local noise).
    """
    groups = [pool(parts)] if distributed else list(parts)
    summed = sum(
        segment_item_counts(
            part, rng, n_items=n_items, n_segments=n_segments,
            max_items_per_customer=cap, noise_multiplier=noise_multiplier,
        )["counts"]
        for part in groups
    )  # fmt: skip
    threshold = suppression_threshold(
        noise_multiplier=noise_multiplier, max_items_per_customer=cap, n_merchants=len(groups)
    )
    return aggregate_segment_popularity({"counts": summed}, threshold=threshold)


def segment_popularity_noise(*, epsilon: float, delta: float, recommender_share: float) -> float:
    """Noise multiplier of the DP per-segment popularity baseline given the recommender's share
    of a run's ε (the segmentation keeps the rest); 0 without privacy."""
    if not np.isfinite(epsilon):
        return 0.0
    plan = [
        PlannedRelease("segmentation", share=1.0 - recommender_share),
        PlannedRelease("popularity", share=recommender_share),
    ]
    return calibrate(plan, epsilon=epsilon, delta=delta)["popularity"]


def random_scorer(n_items: int, rng: np.random.Generator) -> ScoreFn:
    """Uniformly random scores: the floor every method must clear."""
    return lambda positions: rng.random((len(positions), n_items))


def global_popularity_scorer(train: CustomerHistories, n_items: int) -> ScoreFn:
    """Non-private item counts pooled over every customer."""
    counts = np.bincount(np.concatenate(train.items), minlength=n_items).astype(np.float64)
    return lambda positions: np.broadcast_to(counts, (len(positions), n_items))


def segment_popularity_scorer(segment_counts: np.ndarray, segments: np.ndarray) -> ScoreFn:
    """Scores from a (segments x items) count table, e.g. the DP per-segment release."""
    return lambda positions: segment_counts[segments[positions]]


def fit_ease(train: CustomerHistories, n_items: int, l2: float = 500.0) -> np.ndarray:
    """EASE item-item weights (Steck 2019), the centralized non-private reference.

    Closed form: P = (XᵀX + λI)⁻¹, B = I - P / diag(P), zero diagonal.
    """
    gram = item_gram(train, n_items) + l2 * np.eye(n_items)
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights


def ease_scorer(weights: np.ndarray, train: CustomerHistories) -> ScoreFn:
    """Score customers' histories with fitted EASE weights."""
    n_items = weights.shape[0]

    def score(positions: np.ndarray) -> np.ndarray:
        return interaction_matrix(train.subset(positions), n_items) @ weights

    return score
