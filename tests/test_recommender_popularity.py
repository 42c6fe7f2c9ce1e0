"""Per-segment popularity: capped counts, sensitivity, suppression; histories; eval."""

import numpy as np
import pytest
from fedseg.client.recommender.histories import (
    CustomerHistories,
    HistoryError,
    build_histories,
)
from fedseg.client.recommender.popularity import segment_item_counts
from fedseg.privacy.published.neural import collate_histories
from fedseg.server.recommender.fedavg import fedavg
from fedseg.server.recommender.popularity import (
    aggregate_segment_popularity,
    suppression_threshold,
)
from fedseg.simulations.experiments.recsys_eval import fit_ease, leave_last_out, ranking_metrics


def _customers(histories, segments):
    return CustomerHistories(
        np.arange(len(histories)), tuple(np.asarray(h) for h in histories), np.asarray(segments)
    )


def test_noiseless_counts_hand_computed():
    histories = _customers([[0, 1], [1], [2, 0]], [0, 0, 1])
    counts = segment_item_counts(
        histories,
        np.random.default_rng(0),
        n_items=3,
        n_segments=2,
        max_items_per_customer=5,
        noise_multiplier=0.0,
    )["counts"]
    np.testing.assert_array_equal(counts, [[1, 2, 0], [1, 0, 1]])


def test_heavy_customer_changes_counts_by_at_most_sqrt_cap():
    light = _customers([[3]], [0])
    heavy = _customers([np.arange(1000)], [0])
    for one in (light, heavy):
        counts = segment_item_counts(
            one,
            np.random.default_rng(1),
            n_items=1000,
            n_segments=2,
            max_items_per_customer=4,
            noise_multiplier=0.0,
        )["counts"]
        assert np.linalg.norm(counts) <= 2.0 + 1e-12


def test_noise_has_the_declared_std():
    histories = _customers([[0]], [0])
    draws = segment_item_counts(
        histories,
        np.random.default_rng(2),
        n_items=50_000,
        n_segments=2,
        max_items_per_customer=4,
        noise_multiplier=1.5,
    )["counts"]
    # 100,000 draws of N(0, (1.5*2)^2) (cell (0,0) has +1): sample std within 3% fails
    # with probability < 1e-6 (std error of the std is ~0.22%).
    assert np.std(draws) == pytest.approx(3.0, rel=0.03)


def test_suppression_zeroes_cells_below_threshold_and_ranks_the_rest():
    threshold = suppression_threshold(noise_multiplier=1.0, max_items_per_customer=4, n_merchants=9)
    assert threshold == pytest.approx(3 * 1.0 * 6.0)
    popularity = aggregate_segment_popularity(
        {"counts": np.array([[30.0, 5.0, 19.0], [17.0, 40.0, -3.0]])}, threshold=threshold
    )
    np.testing.assert_array_equal(popularity.counts, [[30, 0, 19], [0, 40, 0]])
    assert list(popularity.top_n(0, 2)) == [0, 2]
    assert popularity.top_n(1, 1)[0] == 1


def test_fedavg_divides_the_sum():
    averaged = fedavg({"w": np.array([3.0, 6.0])}, n_clients=3)
    np.testing.assert_allclose(averaged["w"], [1.0, 2.0])
    with pytest.raises(ValueError, match="'w'"):
        fedavg({"w": np.array([np.nan])}, n_clients=1)


def test_build_histories_orders_dedups_and_names_bad_rows():
    import pandas as pd

    events = pd.DataFrame(
        {"user_id": ["a", "a", "b", "a"], "item_id": [5, 6, 5, 5], "timestamp": [3, 1, 1, 4]}
    )
    histories = build_histories(events, {5: 0, 6: 1}, {"a": 0, "b": 1})
    assert [h.tolist() for h in histories.items] == [[1, 0], [0]]
    with pytest.raises(HistoryError, match="events row 2: the item_id is not in") as error:
        build_histories(events.assign(item_id=[5, 6, 7, 5]), {5: 0, 6: 1}, {"a": 0, "b": 1})
    assert "7" not in str(error.value)  # a row, never a value
    flat, offsets = collate_histories(
        [np.array([4, 2]), np.array([], dtype=np.int64), np.array([9])]
    )
    assert flat.tolist() == [4, 2, 9] and offsets.tolist() == [0, 2, 2]


def test_build_histories_with_categorical_ids_in_non_alphabetical_order():
    import pandas as pd

    # Loading yields categorical user ids; their category order need not be alphabetical.
    users = pd.Categorical(["zed", "amy", "zed", "amy"], categories=["zed", "amy"])
    events = pd.DataFrame({"user_id": users, "item_id": [5, 6, 6, 5], "timestamp": [1, 1, 2, 2]})
    histories = build_histories(events, {5: 0, 6: 1}, {"amy": 1, "zed": 0})
    by_user = {u: (h.tolist(), s) for u, h, s in zip(histories.user_ids, histories.items,
                                                     histories.segments, strict=True)}  # fmt: skip
    assert by_user == {"zed": ([0, 1], 0), "amy": ([1, 0], 1)}


def test_ranking_metrics_hand_computed():
    train, test = leave_last_out(_customers([[0, 1], [2, 3], [4]], [0, 0, 0]))
    assert test.tolist() == [1, 3, -1]
    negatives = np.array([[2, 3, 4], [0, 1, 4], [0, 1, 2]])
    scores = np.array([[0, 9, 1, 2, 3], [0, 1, 5, 0.5, 9]], dtype=float)
    result = ranking_metrics(lambda p: scores[p], train, test, negatives, k=1)
    # customer 0: positive (9) beats all -> rank 0; customer 1: positive 0.5 < 1, 9 -> rank 2
    assert result["hr_at_10"] == 0.5
    assert result["ndcg_at_10"] == 0.5
    assert result["hr_at_10_full"] == 0.5
    # full ranking: customer 0 ranks 0 (→ 1/log2 2 = 1); for customer 1 the unseen items 1 and 4
    # score above the positive (1 and 9 against 0.5): rank 2 → 1/log2 4 = 0.5.
    assert result["recall_at_20"] == 1.0
    assert result["ndcg_at_10_full"] == pytest.approx((1.0 + 0.5) / 2)


def test_ease_matches_closed_form_on_a_tiny_matrix():
    train = _customers([[0, 1], [1, 2], [0, 1, 2]], [0, 0, 0])
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=float)
    weights = fit_ease(train, 3, l2=1.0)
    p = np.linalg.inv(x.T @ x + np.eye(3))
    expected = np.eye(3) - p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(weights, expected, atol=1e-12)
