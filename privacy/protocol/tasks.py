"""The requests a server may send a merchant, and the Flower message type of each.

Statistics rounds are QUERY messages, K-means training and FedAvg rounds TRAIN messages.
``describe`` and ``plan`` release nothing; every other task answers a release kind of
privacy/releases.py.
"""

from __future__ import annotations

MESSAGE_KINDS = {
    "describe": "query",
    "plan": "query",
    "feature_histograms": "query",
    "feature_moments": "query",
    "square_norm": "query",
    "cluster_displacements": "train",
    "segment_profiles": "query",
    "item_popularity": "query",
    "item_gram": "query",
    "content_check": "query",
    "recommender_train": "train",
    "lifetime_histograms": "query",
    "lifetime_sums": "query",
}
TASKS = tuple(MESSAGE_KINDS)


def message_type(task: str) -> str:
    """Flower's message type of ``task``, e.g. ``query.describe``."""
    return f"{MESSAGE_KINDS[task]}.{task}"
