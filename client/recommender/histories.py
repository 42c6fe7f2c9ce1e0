"""Customer histories at one merchant: the unit of privacy for the recommender.

Every statistic and every DP-SGD sample in the recommender is built from one
customer's whole history, so bounding what one history can contribute bounds
what one customer can change (user-level DP at that merchant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


class HistoryError(ValueError):
    """Merchant events cannot be turned into customer histories."""


@dataclass(frozen=True)
class CustomerHistories:
    """Item-index histories of a merchant's customers, one entry per customer.

    `items[u]` holds customer u's distinct item indices in time order (first
    occurrence); `segments[u]` is the customer's segment id.
    """

    user_ids: np.ndarray
    items: tuple[np.ndarray, ...]
    segments: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.user_ids) == len(self.items) == len(self.segments)):
            raise HistoryError("user_ids, items and segments must have the same length")
        for position, history in enumerate(self.items):
            if len(history) == 0:
                raise HistoryError(f"customer at position {position} has an empty history")

    def __len__(self) -> int:
        return len(self.user_ids)

    def subset(self, positions: np.ndarray) -> CustomerHistories:
        """The histories of the customers at `positions`."""
        return CustomerHistories(
            self.user_ids[positions],
            tuple(self.items[p] for p in positions),
            self.segments[positions],
        )


def build_histories(
    events: pd.DataFrame,
    item_index: dict,
    segment_of: dict,
) -> CustomerHistories:
    """Group an events table into per-customer item histories.

    `item_index` maps catalogue item ids to 0..n_items-1 and `segment_of` maps
    user ids to segment ids. Unknown items or customers without a segment raise
    `HistoryError` (naming the row, never a value) rather than being dropped; the merchant's
    recommender tasks leave out items the catalogue lacks before calling this.
    """
    for column in ("user_id", "item_id", "timestamp"):
        if column not in events.columns:
            raise HistoryError(f"events table has no column {column!r}")
    unknown = ~events["item_id"].isin(item_index.keys())
    if unknown.any():
        row = events.index[unknown.to_numpy()][0]
        raise HistoryError(f"events row {row}: the item_id is not in the catalogue")
    ordered = events.sort_values(["user_id", "timestamp"], kind="stable")
    ordered = ordered.drop_duplicates(["user_id", "item_id"], keep="first")
    indices = ordered["item_id"].map(item_index).to_numpy(dtype=np.int64)
    # Group boundaries from the sorted column itself: np.unique would re-sort the ids
    # lexicographically, which differs from a categorical column's sort order.
    codes = pd.factorize(ordered["user_id"])[0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    users = ordered["user_id"].to_numpy()[starts]
    missing = [u for u in users if u not in segment_of]
    if missing:
        raise HistoryError(f"{len(missing)} customers of the events have no segment")
    items = tuple(np.split(indices, starts[1:]))
    segments = np.array([segment_of[u] for u in users], dtype=np.int64)
    return CustomerHistories(users, items, segments)
