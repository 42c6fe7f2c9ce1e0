"""Top-N recommendations for a merchant's own customers, from the published model.

Runs at the merchant (`fedseg assign`): the published model (DP-EASE or dpsgd) scores each
customer's own item history and segment; nothing leaves. Items the published catalogue
does not know cannot be scored: they are left out of the history used for scoring (a
customer with none of the catalogue's items gets their segment's best items).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from fedseg.privacy.published.recommender import load_recommender

TOP_N = 10


def customer_item_histories(
    events: pd.DataFrame | None, customer_ids: Sequence[str], catalogue: Sequence[str]
) -> list[np.ndarray]:
    """Each customer's distinct catalogue item indices (empty for a features table)."""
    if events is None:
        return [np.zeros(0, dtype=np.int64) for _ in customer_ids]
    index = {str(item): position for position, item in enumerate(catalogue)}
    positions = events["item_id"].astype(str).map(index)
    known = events.assign(position=positions)[positions.notna().to_numpy()]
    grouped = known.groupby(known["user_id"].astype(str))["position"].unique()
    return [np.asarray(grouped.get(u, []), dtype=np.int64) for u in map(str, customer_ids)]


def recommend_items(
    published: Mapping[str, Any],
    histories: Sequence[np.ndarray],
    segments: np.ndarray,
    *,
    n: int = TOP_N,
    chunk: int = 2048,
) -> list[str]:
    """Space-separated top-``n`` item ids per customer, best first, none already in the history."""
    if "item_ids" not in published:
        raise ValueError("the model's recommender has no field 'item_ids'")
    model = load_recommender(dict(published))
    item_ids = np.asarray([str(i) for i in published["item_ids"]], dtype=object)
    if len(item_ids) != model.n_items:
        raise ValueError("the model's recommender: 'item_ids' does not match its catalogue size")
    lines = []
    for start in range(0, len(histories), chunk):
        block = list(histories[start : start + chunk])
        scores = model.scores(block, np.asarray(segments[start : start + chunk]))
        for row, history in enumerate(block):
            scores[row, history] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        lines.extend(" ".join(item_ids[b]) for b in best)
    return lines


def recommendations_for(
    published: Mapping[str, Any],
    events: pd.DataFrame | None,
    customer_ids: Sequence[str],
    segments: np.ndarray,
) -> list[str]:
    """`recommend_items` for customers given by (pseudonymized) id, from a clean events table."""
    histories = customer_item_histories(events, customer_ids, published.get("item_ids", []))
    return recommend_items(published, histories, segments)
