"""Content scoring and the merchants' DP check of it: known values, sensitivity, noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fedseg.client.recommender.check import content_gain
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.privacy.published.content import ContentModel
from fedseg.privacy.published.prior import PopularityPrior
from fedseg.privacy.published.recommender import RecommenderModel
from fedseg.privacy.releases import content_check_mechanism
from fedseg.server.recommender.content import (
    attribute_weights,
    catalogue_attributes,
    choose_candidate,
)
from scipy import stats

N_A = N_B = 60  # catalogue: items 0..59 of kind A, 60..119 of kind B
HELD = 59  # the A item every A customer holds back
ONE = np.array([[0.3, 0.0]])  # one candidate: content weight 0.3


def _model(content_weight: float = 0.0) -> RecommenderModel:
    """No EASE components; popularity: B items 1.0, A items 0.5, the held A item 0.7."""
    overall = np.r_[np.full(N_A, 0.5), np.full(N_B, 1.0)]
    overall[HELD] = 0.7
    indicators = np.zeros((N_A + N_B, 2))
    indicators[:N_A, 0] = indicators[N_A:, 1] = 1.0
    content = ContentModel(("kind=A", "kind=B"), indicators, np.ones(2))
    empty = np.zeros((1, 0))
    return RecommenderModel(
        np.array([0]), empty, np.zeros(0), PopularityPrior(overall), 0.3,
        content=content, content_weight=content_weight,
    )  # fmt: skip


def _customers(histories: list[list[int]], *, first_id: int = 0) -> CustomerHistories:
    return CustomerHistories(
        np.arange(first_id, first_id + len(histories)),
        tuple(np.asarray(h, dtype=np.int64) for h in histories),
        np.zeros(len(histories), dtype=np.int64),
    )


def test_catalogue_attributes_hand_computed():
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "genres": ["Drama|War", "Drama", None, "Comedy"],
            "price": [1.0, 2.0, 3.0, 4.0],
        }
    )
    names, matrix = catalogue_attributes(items)
    assert names == (
        "genres=Comedy", "genres=Drama", "genres=War",
        "price_tier=q1", "price_tier=q2", "price_tier=q3", "price_tier=q4",
    )  # fmt: skip
    expected = [[0, 1, 1, 1, 0, 0, 0], [0, 1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0],
                [1, 0, 0, 0, 0, 0, 1]]  # fmt: skip
    np.testing.assert_array_equal(matrix, expected)
    assert catalogue_attributes(items[["item_id"]])[0] == ()


def test_attribute_weights_are_square_root_inverse_shares():
    indicators = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    weights = attribute_weights(np.array([2.0, 1.0, -5.0]), indicators)  # noise below 0 → 0
    np.testing.assert_allclose(weights, [math.sqrt(3 / 2), math.sqrt(3 / 1)])
    with pytest.raises(ValueError, match="covers 2 items"):
        attribute_weights(np.ones(2), indicators)


def test_affinity_hand_computed_and_round_trip():
    content = ContentModel(("x", "y"), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                           np.array([1.0, 2.0]))  # fmt: skip
    # History (item 0, item 2): profile (1, 0.5), weighted (1, 1) → scores (1, 1, 2) / 2.
    np.testing.assert_allclose(content.affinity([np.array([0, 2]), np.array([])]),
                               [[0.5, 0.5, 1.0], [0.0, 0.0, 0.0]])  # fmt: skip
    again = ContentModel.from_dict(content.to_dict())
    np.testing.assert_array_equal(again.indicators, content.indicators)
    np.testing.assert_array_equal(again.weights, content.weights)


def test_choose_candidate_takes_the_best_positive_gain():
    rows = np.array([[0.3, 0.0], [0.0, 10.0]])
    assert choose_candidate(np.array([3.0, 7.5]), rows).tolist() == [0.0, 10.0]
    assert choose_candidate(np.array([-2.0, -0.1]), rows).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="2 gains for 1"):
        choose_candidate(np.array([1.0, 2.0]), rows[:1])


def test_content_scoring_moves_the_ranking_as_computed():
    model = _model(content_weight=0.3)
    scores = model.scores([np.array([0, 1])], np.array([0]))[0]
    assert scores[HELD] == pytest.approx(0.3 * 0.7 + 0.3)  # A item: prior + full affinity
    assert scores[N_A] == pytest.approx(0.3 * 1.0)  # B item: prior, no affinity
    top = model.recommend(np.array([0, 1]), segment=0, n=1)
    assert top.tolist() == [HELD]
    restored = RecommenderModel.from_arrays(model.to_arrays())
    assert restored.content_weight == 0.0  # the weight is the server's choice, not sent
    np.testing.assert_allclose(
        restored.scores([np.array([0, 1])], np.array([0])),
        model.scores([np.array([0, 1])], np.array([0]))
        - 0.3 * model.content.affinity([np.array([0, 1])]),
    )


def test_noiseless_gain_counts_the_customers_content_wins():
    # Three A customers hold back the A item HELD: without content it sits below all ~50
    # sampled B items (miss); with weight 0.3 it tops every negative (hit) → +1 each.
    # Two B customers hold back a B item: it ties with the sampled B items either way → 0.
    # One customer has a single item: nothing to hold back → 0.
    customers = _customers([[0, 1, HELD], [2, HELD], [3, 4, 5, HELD], [60, 61], [62, 63], [7]])
    gain = content_gain(
        customers, _model(), np.array([[0.3, 0.0], [1e-6, 0.0]]), np.random.default_rng(0)
    )["gain"]
    np.testing.assert_array_equal(gain, [3.0, 0.0])


def test_heavy_customer_moves_each_entry_by_at_most_one_and_no_one_else():
    """Each customer's negatives come from a stream of their own: adding a heavy customer
    changes only that customer's contribution (≤ 1 per candidate), whatever the seed."""
    light = _customers([[0, HELD], [60, 61]])
    heavy = _customers([[0, HELD], [60, 61], list(range(58)) + [HELD]])
    candidates = np.array([[0.05, 0.0], [0.3, 0.0], [2.0, 0.0]])
    for seed in range(5):
        gains = [
            content_gain(c, _model(), candidates, np.random.default_rng(seed))["gain"]
            for c in (light, heavy)
        ]
        assert np.abs(gains[1] - gains[0]).max() <= 1.0
        alone = content_gain(
            _customers([list(range(58)) + [HELD]], first_id=2), _model(), candidates,
            np.random.default_rng(seed),
        )["gain"]  # fmt: skip
        np.testing.assert_array_equal(gains[1] - gains[0], alone)


def test_gain_noise_has_std_z_times_sqrt_candidates():
    z, draws = 2.0, 3000
    mechanism = content_check_mechanism(z, candidates=4)
    assert mechanism.sensitivities["gain"] == 2.0
    rng = np.random.default_rng(11)
    samples = np.stack(
        [mechanism.release({"gain": np.zeros(4)}, rng)["gain"] for _ in range(draws)]
    )
    sum_sq = float((samples**2).sum()) / (z * 2.0) ** 2  # χ² with 4·draws degrees of freedom
    dof = samples.size
    assert stats.chi2.ppf(5e-7, dof) < sum_sq < stats.chi2.ppf(1 - 5e-7, dof)


def test_bad_requests_raise_value_errors():
    customers = _customers([[0, HELD]])
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="not both 0"):
        content_gain(customers, _model(), np.zeros((1, 2)), rng)
    with pytest.raises(ValueError, match="segment lift"):  # the model has no lift part
        content_gain(customers, _model(), np.array([[0.0, 10.0]]), rng)
    bare = RecommenderModel.from_arrays({k: v for k, v in _model().to_arrays().items()
                                         if not k.startswith("attribute")})  # fmt: skip
    with pytest.raises(ValueError, match="no content"):
        content_gain(customers, bare, ONE, rng)
    with pytest.raises(ValueError, match="'vectors' is missing"):
        RecommenderModel.from_arrays({"item_index": np.array([0])})
