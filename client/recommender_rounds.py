"""Offer the recommender rounds on a merchant's node, loading their code on first use.

The recommender modules pull in scipy and torch (seconds of import time); a merchant
that is only asked for segmentation never pays for them. See client/recommender/tasks.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from fedseg.client.node import MerchantNode, ReleaseMode

RECOMMENDER_TASKS = ("item_popularity", "item_gram", "content_check", "recommender_train")


def offer_recommender(
    node: MerchantNode,
    *,
    customer_ids: Sequence[str],
    load_events: Callable[[], pd.DataFrame | None],
    holdout_last: bool = False,
) -> None:
    """Register the recommender tasks on `node` (plain and secure paths alike)."""
    loaded: list = []

    def handler(task: str) -> Callable[[Mapping[str, Any], ReleaseMode], dict]:
        def answer(payload: Mapping[str, Any], mode: ReleaseMode) -> dict:
            if not loaded:
                from fedseg.client.recommender.tasks import RecommenderTasks

                loaded.append(RecommenderTasks(customer_ids, load_events, holdout_last))
            return getattr(loaded[0], task)(node, payload, mode)

        return answer

    for task in RECOMMENDER_TASKS:
        node.register(task, handler(task))
