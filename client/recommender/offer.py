"""Offer the recommender rounds on a merchant's node, loading their code on first use.

The recommender modules pull in scipy and torch (seconds of import time); a merchant
that is only asked for segmentation never pays for them. See client/recommender/tasks.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from fedseg.client.node import Answer, MerchantNode
from fedseg.privacy.accounting import Release

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

    def handler(task: str) -> Callable[[MerchantNode, Mapping[str, Any], Release], Answer]:
        def answer(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
            if not loaded:
                from fedseg.client.recommender.tasks import RecommenderTasks

                loaded.append(RecommenderTasks(customer_ids, load_events, holdout_last))
            return getattr(loaded[0], task)(node, payload, planned)

        return answer

    for task in RECOMMENDER_TASKS:
        node.register(task, handler(task))
