"""Standard RFM labels and "what to do": tiny hand-computed cases for the rules."""

from __future__ import annotations

import numpy as np
import pytest
from fedseg.server.actions import promotion_advice, segment_actions
from fedseg.server.rfm import (
    mid_rank,
    quintile_score,
    rfm_label,
    segment_rfm,
    shopify_group,
    threshold_score,
)


def test_mid_rank_of_a_histogram_by_hand():
    # 10 customers in [0, 1), 30 in [1, 2): a value of 1.5 has 10 + 15 below it of 40.
    assert mid_rank(1.5, [10, 30], [0, 1, 2]) == pytest.approx(25 / 40)
    assert mid_rank(-1.0, [10, 30], [0, 1, 2]) == 0.0 and mid_rank(9, [10, 30], [0, 1, 2]) == 1.0


@pytest.mark.parametrize(
    ("rank", "lower", "score"),
    [(0.0, False, 1), (0.2, False, 1), (0.21, False, 2), (0.99, False, 5), (0.1, True, 5)],
)
def test_quintile_scores(rank, lower, score):
    assert quintile_score(rank, lower_is_better=lower) == score


def test_public_thresholds_by_hand():
    assert threshold_score(20, (30, 90, 180, 365), lower_is_better=True) == 5
    assert threshold_score(400, (30, 90, 180, 365), lower_is_better=True) == 1
    assert threshold_score(3, (1, 2, 4, 8), lower_is_better=False) == 3


@pytest.mark.parametrize(
    ("scores", "label"),
    [
        ((5, 5, 5), "Champions"),
        ((3, 4, 4), "Loyal Customers"),
        ((5, 2, 2), "Potential Loyalist"),  # first match wins over About To Sleep
        ((4, 1, 1), "New Customers"),  # narrower than Potential Loyalist, so checked first
        ((3, 1, 1), "Promising"),
        ((2, 5, 5), "Loyal Customers"),
        ((1, 5, 5), "Can't Lose Them"),  # narrower than At Risk
        ((2, 5, 5), "Loyal Customers"),
        ((1, 3, 3), "At Risk"),
        ((1, 1, 1), "Lost"),
        ((2, 1, 4), "Hibernating"),  # no row matches, long since the last purchase
        ((4, 1, 4), "Others"),
    ],
)
def test_rfm_rule_table(scores, label):
    assert rfm_label(*scores) == label


@pytest.mark.parametrize(
    ("r", "f", "m", "group"),
    [(5, 5, 4, "CHAMPIONS"), (5, 1, 1, "NEW"), (4, 4, 4, "LOYAL"), (4, 1, 2, "ACTIVE"),
     (3, 1, 1, "PROMISING"), (3, 2, 3, "NEEDS_ATTENTION"), (1, 5, 5, "PREVIOUSLY_LOYAL"),
     (2, 3, 4, "AT_RISK"), (2, 1, 1, "ALMOST_LOST"), (1, 2, 1, "DORMANT")],
)  # fmt: skip
def test_shopify_grid(r, f, m, group):
    assert shopify_group(r, f, m) == group
    assert shopify_group(r, f, m, has_orders=False) == "PROSPECTS"


def test_segment_scores_from_the_dp_marginals():
    """Two segments over one recency, orders and spend marginal each (model space: orders and
    spend log1p, recency plain)."""
    features, log = ("recency_days", "orders", "spend"), (False, True, True)
    edges = [[0, 100, 200], list(np.log1p([0, 2, 10])), list(np.log1p([0, 50, 500]))]
    counts = [[50, 50], [80, 20], [50, 50]]
    profiles = [
        {"segment": 1, "recency_days": 10, "orders": 9, "spend": 450},  # recent, many, much
        {"segment": 2, "recency_days": 190, "orders": 1, "spend": 20},  # long ago, one, little
    ]
    rows = segment_rfm(profiles, features=features, log=log,
                       marginals={"counts": counts, "edges": edges})  # fmt: skip
    # Segment 1: recency 10 has rank 5/100 → R 5; orders 9 ≈ 0.97 → F 5; spend 450 ≈ 0.98 → M 5.
    # Segment 2: recency 190: (50 + 45)/100 → R 1; orders 1: 80·log 2/log 3 = 50.5 of 100 → F 3;
    # spend 20: 50·log 21/log 51 = 38.7 of 100 → M 2.
    assert [(r["r"], r["f"], r["m"]) for r in rows] == [(5, 5, 5), (1, 3, 2)]
    assert [r["rfm_label"] for r in rows] == ["Champions", "At Risk"]
    assert rows[0]["scored_from"] == "dp_marginals"
    fallback = segment_rfm(profiles, features=features, log=log)
    assert [(r["r"], r["f"], r["m"]) for r in fallback] == [(5, 5, 4), (2, 1, 1)]
    assert segment_rfm(profiles, features=("orders",), log=(True,)) is None


def test_promotion_rule_by_hand():
    assert promotion_advice({"r": 1, "f": 4, "m": 5}, None, None).startswith("spend: win-back")
    assert promotion_advice({"r": 2, "f": 2, "m": 2}, 5, 0.1).startswith("don't spend")
    assert promotion_advice({"r": 5, "f": 5, "m": 3}, None, None).startswith("reward")
    assert promotion_advice({"r": 5, "f": 1, "m": 1}, None, None).startswith("small spend")
    assert promotion_advice({"r": 3, "f": 3, "m": 3}, None, None).startswith("nurture")


def test_actions_read_only_the_published_blocks():
    import pandas as pd

    catalogue = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "category": ["x", "x", "y", "z"],
                              "price": [1.0, 2.0, 3.0, 100.0]})  # fmt: skip
    scores = np.array([[0.0, 0.1, 0.1, 0.8], [0.5, 0.4, 0.1, 0.0]])
    rfm = [{"r": 1, "f": 4, "m": 5, "rfm_label": "Can't Lose Them"},
           {"r": 5, "f": 1, "m": 1, "rfm_label": "New Customers"}]  # fmt: skip
    rows = segment_actions([{}, {}], rfm, item_scores=scores, catalogue=catalogue)
    assert rows[0]["top_categories"] == ["z", "x", "y"] and rows[1]["top_categories"][0] == "x"
    assert rows[0]["price_band"].startswith("premium") and rows[1]["price_band"].startswith(
        "budget"
    )
    assert rows[0]["promotion"].startswith("spend: win-back")
    assert rows[0]["text"].startswith("Segment 1 (Can't Lose Them); offer z, x, y")
