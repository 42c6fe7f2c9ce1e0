"""Neighbouring merchant tables for privacy tests and audits: a table, and the same table
plus one customer as unlike the others as the schema allows."""

from __future__ import annotations

import numpy as np
import pandas as pd


def extreme_customer(table: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """``table`` (a synthetic merchant's events) plus one customer as unlike the others as
    the schema allows: events up to 2025-02-28 (two months after everyone else's), from
    twenty years back, spending 10⁶ per order, hundreds of items, a new category and an
    item no catalogue lists."""
    rng = np.random.default_rng(0)
    items = catalogue["item_id"].to_numpy()
    n = 400
    times = pd.date_range("2005-03-02", "2025-02-28T23:00", periods=n)
    events = pd.DataFrame(
        {
            "user_id": 10**9,
            "timestamp": times,
            "event": np.resize(["view", "purchase", "cart", "review"], n),
            "item_id": np.r_[rng.permutation(items)[: n - 1], 10**8],  # one item nobody lists
            "price": 1e5,
            "category": np.resize(["electronics", "toys", "fashion", "garden"], n),
            "quantity": 10.0,
            "duration_s": 3600.0,
            "rating": 5.0,
            "email": "extreme@example.com",
        }
    )
    return pd.concat([table, events[table.columns]], ignore_index=True)
