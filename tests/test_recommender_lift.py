"""Per-segment popularity lifted by the customer's attribute mix: known values and limits."""

from __future__ import annotations

import numpy as np
import pytest
from fedseg.privacy.published.content import ContentModel
from fedseg.privacy.published.lift import FLOOR, SegmentLift
from fedseg.privacy.published.prior import PopularityPrior
from fedseg.privacy.published.recommender import RecommenderModel

# Items 0, 1 in category A, 2, 3 in category B; item 3 has no price tier, the rest "low".
CONTENT = ContentModel(
    ("category=A", "category=B", "price_tier=low"),
    np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 0]], dtype=float),
    np.ones(3),
)
LIFT = SegmentLift(np.array([[0.4, 0.4, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4]]))


def test_scores_hand_computed():
    # Segment 0 buys category A 80% of the time. A customer with one B item and κ = 1:
    # own mix (0.8·1 + (0, 1)) / 2 = (0.4, 0.6) → lift A 0.5, B 3; price tier: every
    # priced item is "low" (mix 1 → lift 1), item 3 has no tier (factor 1).
    scores = LIFT.scores([np.array([2])], np.array([0]), CONTENT, strength=1.0)
    np.testing.assert_allclose(scores, [[0.2, 0.2, 0.3, 0.3]])


def test_large_strength_is_per_segment_popularity_and_empty_history_too():
    histories = [np.array([2, 3]), np.array([], dtype=np.int64)]
    scores = LIFT.scores(histories, np.array([0, 1]), CONTENT, strength=1e12)
    np.testing.assert_allclose(scores, LIFT.segment_items, rtol=1e-9)
    empty = LIFT.scores(histories[1:], np.array([0]), CONTENT, strength=0.5)
    np.testing.assert_allclose(empty, LIFT.segment_items[:1])
    with pytest.raises(ValueError, match="strength"):
        LIFT.scores(histories, np.array([0, 1]), CONTENT, strength=0.0)


def test_from_gram_block_clips_and_spreads_the_floor():
    block = np.array([[3.0, -1.0], [1.0, 1.0]])  # over items (2, 0) of a 3-item catalogue
    lift = SegmentLift.from_gram_block(block, np.array([2, 0]), np.array([1.0, 0.0, 3.0]))
    spread = np.array([0.25, 0.0, 0.75])
    np.testing.assert_allclose(lift.segment_items[0], (1 - FLOOR) * np.array([0, 0, 1.0])
                               + FLOOR * spread)  # fmt: skip
    np.testing.assert_allclose(lift.segment_items[1], (1 - FLOOR) * np.array([0.5, 0, 0.5])
                               + FLOOR * spread)  # fmt: skip
    np.testing.assert_allclose(lift.segment_items.sum(axis=1), 1.0)


def test_model_scores_with_lift_when_chosen_and_round_trips():
    model = RecommenderModel(
        np.array([0]), np.zeros((3, 0)), np.zeros(0), PopularityPrior(np.ones(4)), 0.3,
        n_segments=2, content=CONTENT, lift=LIFT, lift_strength=1.0,
    )  # fmt: skip
    np.testing.assert_allclose(model.scores([np.array([2])], np.array([0])), [[0.2, 0.2, 0.3, 0.3]])
    for again in (
        RecommenderModel.from_dict(model.to_dict()),
        RecommenderModel.from_arrays(model.to_arrays()),
    ):
        np.testing.assert_array_equal(again.lift.segment_items, LIFT.segment_items)
        assert again.content.names == CONTENT.names
    assert RecommenderModel.from_dict(model.to_dict()).lift_strength == 1.0
    with pytest.raises(ValueError, match="lift_strength > 0 needs"):
        RecommenderModel(np.array([0]), np.zeros((1, 0)), np.zeros(0), PopularityPrior(np.ones(4)),
                         0.3, lift_strength=1.0)  # fmt: skip
