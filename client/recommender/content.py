"""Content scoring for items nobody has interacted with yet.

R(x, y) = sum_i w_i c_i(x) c_i(y): c_i(y) is item y's indicator of attribute
value i (category, price tier: public catalogue data), c_i(x) the share of
customer x's history with that value (local), and w_i the customer's segment's
weight for that value, derived on the server from the DP popularity aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from fedseg.client.recommender.histories import CustomerHistories


def attribute_matrix(
    items: pd.DataFrame, columns: Sequence[str] = ("category", "price_tier")
) -> tuple[np.ndarray, list[str]]:
    """One-hot (n_items x n_values) matrix of the catalogue's attributes, rows in table order."""
    blocks, names = [], []
    for column in columns:
        if column not in items.columns:
            raise ValueError(f"item catalogue has no column {column!r}")
        if items[column].isna().any():
            row = int(np.flatnonzero(items[column].isna().to_numpy())[0])
            raise ValueError(f"item catalogue row {row}: {column!r} is missing")
        values = items[column].astype(str)
        levels = sorted(values.unique())
        blocks.append((values.to_numpy()[:, None] == np.array(levels)[None, :]).astype(float))
        names += [f"{column}={level}" for level in levels]
    return np.hstack(blocks), names


def customer_profiles(histories: CustomerHistories, attributes: np.ndarray) -> np.ndarray:
    """c(x): each customer's mean attribute vector over their history."""
    return np.stack([attributes[history].mean(axis=0) for history in histories.items])


def content_scores(
    histories: CustomerHistories, attributes: np.ndarray, segment_weights: np.ndarray
) -> np.ndarray:
    """R(x, y) for every customer x (rows) and item y (columns)."""
    weighted = customer_profiles(histories, attributes) * segment_weights[histories.segments]
    return weighted @ attributes.T


def recommend_top_n(scores: np.ndarray, histories: CustomerHistories, n: int = 10) -> np.ndarray:
    """Each customer's n best-scored items they have not interacted with (local output)."""
    masked = np.array(scores, dtype=np.float64)
    for row, history in enumerate(histories.items):
        masked[row, history] = -np.inf
    top = np.argpartition(-masked, min(n, masked.shape[1] - 1), axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(masked, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
