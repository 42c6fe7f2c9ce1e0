"""Which scorer suits these customers? A DP count the server chooses the model's scorer by.

The published model can score with DP-EASE alone, DP-EASE plus content scoring
(server/recommender/content.py), or per-segment popularity personalized by attribute mix
(privacy/published/lift.py). Which ranks best is a property of the data (MovieLens: EASE
plus genres and years; the synthetic personas: segment popularity), so the merchants measure
it: each customer's last item is held back, the rest of their history is scored by EASE
alone and by each candidate (a row (content_weight, lift_strength)), and the item is ranked
against `N_NEGATIVES` unseen items (the evaluation protocol of docs/contract.md). The release is,
per candidate, Σ_customers (hit with it − hit with EASE alone): one customer moves each
entry by at most 1, so the vector has L2 sensitivity sqrt(candidates).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from fedseg.client.recommender.histories import CustomerHistories

if TYPE_CHECKING:
    from fedseg.privacy.published.recommender import RecommenderModel

N_NEGATIVES, TOP_N, CHUNK = 99, 10, 512


def content_gain(
    histories: CustomerHistories,
    model: RecommenderModel,
    candidates: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """{"gain": (len(candidates),)}: extra hits@10 each candidate scorer would give (raw).

    `candidates` rows are (content_weight, lift_strength), not both 0. Customers with one
    item have nothing to hold back and contribute 0. Each customer's negatives come from a
    stream of their own (keyed by their pseudonym), so adding or removing a customer leaves
    every other customer's contribution unchanged.
    """
    candidates = np.asarray(candidates, dtype=np.float64)
    if candidates.ndim != 2 or candidates.shape[1] != 2 or not len(candidates):
        raise ValueError("candidates must be rows of (content_weight, lift_strength)")
    if np.any(candidates < 0) or np.any(candidates.sum(axis=1) <= 0):
        raise ValueError("candidate weights must be >= 0 and not both 0 in a row")
    if model.content is None or (model.lift is None and np.any(candidates[:, 1] > 0)):
        raise ValueError("the model has no content (or segment lift) part to check")
    base = int(rng.integers(2**63))
    eligible = np.flatnonzero([len(h) >= 2 for h in histories.items])
    gain = np.zeros(len(candidates))
    for start in range(0, len(eligible), CHUNK):
        chunk = eligible[start : start + CHUNK]
        gain += _chunk_gain(histories, model, candidates, chunk, base)
    return {"gain": gain}


def _chunk_gain(histories, model, candidates, positions, base: int) -> np.ndarray:
    past = [histories.items[p][:-1] for p in positions]
    held = np.array([histories.items[p][-1] for p in positions], dtype=np.int64)
    segments = histories.segments[positions]
    keys = np.stack([_own_keys(histories.user_ids[p], base, model.n_items) for p in positions])
    negatives = _unseen_sample(past, held, keys)
    hits = []
    for content_weight, lift_strength in np.vstack([[0.0, 0.0], candidates]):
        variant = replace(model, content_weight=content_weight, lift_strength=lift_strength)
        hits.append(sampled_rank(variant.scores(past, segments), held, negatives) < TOP_N)
    return np.array([np.sum(hit.astype(int) - hits[0]) for hit in hits[1:]], dtype=np.float64)


def sampled_rank(scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Per row, the positive item's rank among that row's sampled negatives (0 = best);
    a tie counts half, so a constant scorer gets chance-level ranks."""
    rows = np.arange(len(scores))
    positive = scores[rows, positives][:, None]
    sampled = scores[rows[:, None], negatives]
    return (sampled > positive).sum(axis=1) + 0.5 * (sampled == positive).sum(axis=1)


def _own_keys(user_id: object, base: int, n_items: int) -> np.ndarray:
    """One customer's random sort keys over the catalogue, from a stream of their own."""
    digest = hashlib.sha256(str(user_id).encode()).digest()
    own = np.random.default_rng([base, int.from_bytes(digest[:8], "little")])
    return own.random(n_items)


def _unseen_sample(past, held, keys: np.ndarray) -> np.ndarray:
    """Per row, up to N_NEGATIVES distinct items outside the history and the held item
    (uniform: the smallest random keys among the allowed items)."""
    keys = keys.copy()
    n_items = keys.shape[1]
    for row, history in enumerate(past):
        keys[row, history] = np.inf
    keys[np.arange(len(past)), held] = np.inf
    count = min(N_NEGATIVES, n_items - 1)
    sample = np.argpartition(keys, count - 1, axis=1)[:, :count]
    # A customer who saw nearly the whole catalogue may leave fewer allowed items than
    # `count`: those slots point at seen items and are dropped by repeating the held item,
    # which ties with the positive and counts as half a rank, as in the evaluation.
    blocked = np.isinf(np.take_along_axis(keys, sample, axis=1))
    return np.where(blocked, held[:, None], sample)
