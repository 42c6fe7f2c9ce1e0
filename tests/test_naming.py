"""Segment names read like the personas merchants know, and never repeat."""

import numpy as np
from fedseg.server.naming import segment_names

FEATURES = ("browse_minutes", "orders", "spend", "avg_order_value", "recency_days")


def test_personas_get_their_names():
    centres = np.array([
        [1.4, -1.4, -0.9, -0.8, 1.1],  # browses a lot, never buys
        [-1.8, -1.1, -0.9, -0.5, 1.2],  # gone quiet
        [0.5, 0.7, 0.9, 0.6, -0.7],  # buys often, spends a lot
        [-1.4, 0.3, 1.0, 1.1, -0.5],  # rare, expensive orders
        [0.0, 0.6, -0.2, -0.9, -0.3],  # many cheap orders
    ])  # fmt: skip
    assert segment_names(FEATURES, centres) == [
        "window shopper", "dormant", "high-value loyal", "occasional big spender", "bargain hunter",
    ]  # fmt: skip


def test_a_skimming_buyer_is_a_bargain_hunter():
    features = ("browse_minutes", "pages_viewed", "orders", "avg_order_value")
    assert segment_names(features, np.array([[-1.4, 0.9, 0.3, 0.25]])) == ["bargain hunter"]


def test_generic_features_get_high_low_names_and_duplicates_are_numbered():
    names = segment_names(("f0", "f1"), np.array([[2.0, -1.0], [2.0, -1.0], [0.0, 0.0]]))
    assert names == ["high f0, low f1", "high f0, low f1 #2", "average"]
