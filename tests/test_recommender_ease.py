"""DP-EASE: user-level sensitivity of the releases, noise, accounting, cap, server fit."""

import json
import math

import numpy as np
import pytest
from fedseg.client.recommender.gram import item_gram, item_popularity
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.privacy import releases
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.published.recommender import RecommenderModel
from fedseg.server.recommender.ease import choose_items, fit_recommender
from fedseg.simulations.experiments.recsys_eval import fit_ease, interaction_matrix
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm


def _customers(histories, segments=None):
    segments = np.zeros(len(histories), dtype=np.int64) if segments is None else segments
    return CustomerHistories(
        np.arange(len(histories)), tuple(np.asarray(h) for h in histories), np.asarray(segments)
    )


def _gram(histories, items, *, noise_multiplier=0.0, noise_share=1.0, **kw):
    """The released Gram as a matrix: the merchant's raw triangle, noised as the node does."""
    triangle = item_gram(histories, item_index=np.asarray(items), **kw)
    placement = releases.NoisePlacement(noise_share)
    mechanism = placement.per_merchant(releases.gram_mechanism(noise_multiplier))
    noisy = mechanism.release(triangle, np.random.default_rng(0))["gram"]
    return {"gram": releases.gram_from_triangle(noisy, len(items) + kw.get("n_segments", 0))}


def test_gram_hand_computed():
    # x1 = (1, 1)/sqrt(2), x2 = (0, 1): G = x1 x1ᵀ + x2 x2ᵀ.
    gram = _gram(_customers([[0, 1], [1]]), [0, 1])["gram"]
    np.testing.assert_allclose(gram, [[0.5, 0.5], [0.5, 1.5]])


def test_segment_columns_hand_computed():
    # Customer [0] in segment 1: x = (1, 0 | 0, 1)/sqrt(2); items outside item_index ignored.
    gram = _gram(_customers([[0, 5]], [1]), [0, 1], n_segments=2)["gram"]
    expected = np.outer([1, 0, 0, 1], [1, 0, 0, 1]) / 2
    np.testing.assert_allclose(gram, expected)


def test_unnormalized_gram_is_exact_cooccurrence():
    histories = _customers([[0, 1, 2], [1, 2], [2]])
    gram = _gram(histories, [0, 1, 2], normalize=False)["gram"]
    x = interaction_matrix(histories, 3)
    np.testing.assert_allclose(gram, x.T @ x)


@settings(max_examples=60, deadline=None)
@given(
    base=st.lists(st.lists(st.integers(0, 29), min_size=1, max_size=12), min_size=0, max_size=8),
    extra=st.lists(st.integers(0, 29), min_size=1, max_size=30),
    segment=st.integers(0, 2),
)
def test_one_customer_moves_each_release_by_at_most_one(base, extra, segment):
    items = np.arange(0, 30, 2)  # a Gram over half the catalogue
    segments = [i % 3 for i in range(len(base))]
    without = _customers([sorted(set(h)) for h in base] or [[1]], segments or [0])
    rows = [*without.items, np.array(sorted(set(extra)))]
    with_one = _customers(rows, [*without.segments, segment])
    for kw in ({}, {"n_segments": 3}, {"n_segments": 3, "segment_weight": 4.0}):
        delta = _gram(with_one, items, **kw)["gram"] - _gram(without, items, **kw)["gram"]
        assert np.linalg.norm(delta) <= 1 + 1e-9
    pops = [item_popularity(h, n_items=30)["overall"] for h in (with_one, without)]
    assert np.linalg.norm(pops[0] - pops[1]) <= 1 + 1e-9


def test_heavy_customer_counts_no_more_than_light_one():
    heavy, light = _customers([np.arange(1000)]), _customers([np.array([7])])
    for one in (heavy, light):
        gram = _gram(one, np.arange(1000))["gram"]
        assert np.linalg.norm(gram) == pytest.approx(1.0)
        overall = item_popularity(one, n_items=1000)["overall"]
        assert np.linalg.norm(overall) == pytest.approx(1.0)


def test_gram_noise_has_declared_std():
    # One customer outside item_index: the release is pure noise. Off-diagonal entries carry
    # sigma/sqrt(2) (upper triangle scaled by sqrt(2)), the diagonal sigma. Variance checks at
    # 5.5 standard errors: false-alarm rate < 1e-7 each.
    sigma, n = 2.0, 200
    gram = _gram(_customers([[999]]), np.arange(n), noise_multiplier=sigma)["gram"]
    np.testing.assert_array_equal(gram, gram.T)
    off = gram[np.triu_indices(n, 1)] * math.sqrt(2)
    diag = np.diag(gram)
    for values in (off, diag):
        ratio = np.mean(values**2) / sigma**2
        assert abs(ratio - 1) < 5.5 * math.sqrt(2 / values.size)


def test_distributed_noise_share_scales_variance():
    sigma, n, share = 1.0, 150, 0.25
    gram = _gram(_customers([[999]]), np.arange(n), noise_multiplier=sigma, noise_share=share)
    off = gram["gram"][np.triu_indices(n, 1)] * math.sqrt(2)
    ratio = np.mean(off**2) / (share * sigma**2)
    assert abs(ratio - 1) < 5.5 * math.sqrt(2 / off.size)


def _analytic_gaussian_delta(epsilon, z):
    """delta(epsilon) of the Gaussian mechanism with noise multiplier z (Balle & Wang 2018)."""
    return norm.cdf(-epsilon * z + 1 / (2 * z)) - math.exp(epsilon) * norm.cdf(
        -epsilon * z - 1 / (2 * z)
    )


def test_ledger_epsilon_matches_analytic_gaussian():
    z, delta = 1.3, 1e-6
    ledger = PrivacyLedger(None, epsilon_cap=math.inf, delta=delta)
    ledger.charge(releases.popularity_mechanism(z * math.sqrt(2)).as_release(releases.POPULARITY))
    ledger.charge(releases.gram_mechanism(z * math.sqrt(2)).as_release(releases.GRAM))
    names = [r.name for r in ledger.releases]
    assert names == ["recommender_item_popularity", "recommender_gram"]
    assert all(r.l2_sensitivity == 1.0 for r in ledger.releases)
    # Two Gaussians with z*sqrt(2) compose to one with z: delta at the ledger's epsilon.
    assert _analytic_gaussian_delta(ledger.spent(), z) == pytest.approx(delta, rel=0.05)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="segment"):
        _gram(_customers([[0]], [4]), [0], n_segments=2)
    with pytest.raises(ValueError, match="distinct"):
        _gram(_customers([[0]]), [0, 0])


def test_items_outside_the_catalogue_count_for_nothing():
    outside = item_popularity(_customers([[5], [0, 5]]), n_items=3)["overall"]
    np.testing.assert_allclose(outside, [1.0, 0.0, 0.0])  # item 5 is ignored, rows re-normed


def test_noise_free_fit_equals_closed_form_ease():
    rng = np.random.default_rng(1)
    histories = _customers(
        [rng.choice(12, size=rng.integers(1, 6), replace=False) for _ in range(40)]
    )
    items = np.arange(12)
    summed = {**_gram(histories, items, normalize=False), "overall": np.ones(12)}
    lam = 3.0
    scale = lam / np.mean(np.diag(summed["gram"]))
    model = fit_recommender(
        summed, item_index=items, gram_sigma=0.0, lam_scale=scale, popularity_weight=0.0
    )
    x = interaction_matrix(histories, 12)
    expected = x @ fit_ease(histories, 12, l2=lam)
    got = model.scores(list(histories.items), histories.segments)
    for row, history in enumerate(histories.items):
        unseen = np.setdiff1d(items, history)
        # Scores are per-customer scaled: compare up to one positive factor.
        ours, theirs = got[row, unseen], expected[row, unseen]
        np.testing.assert_allclose(ours / np.abs(ours).max(), theirs / np.abs(theirs).max())


def test_denoising_keeps_the_planted_direction_only():
    n, sigma = 100, 1.0
    rng = np.random.default_rng(4)
    planted = np.zeros(n)
    planted[:10] = 1 / math.sqrt(10)
    noise = rng.normal(0, sigma, (n, n))
    gram = 300 * np.outer(planted, planted) + (noise + noise.T) / 2
    model = fit_recommender(
        {"gram": gram, "overall": np.ones(n)}, item_index=np.arange(n), gram_sigma=sigma
    )
    assert 1 <= model.vectors.shape[1] <= 3
    assert abs(model.vectors[:, -1] @ planted) > 0.99
    top = model.recommend(np.array([0, 1]), segment=0, n=8)
    assert set(top) == set(range(2, 10))


def test_model_round_trips_through_json_and_never_recommends_history():
    histories = _customers([[0, 1, 2], [1, 2, 3], [3, 4], [0, 4, 5]], [0, 1, 0, 1])
    items = np.array([0, 1, 2, 3, 4])
    summed = {
        **_gram(histories, items, n_segments=2),
        **item_popularity(histories, n_items=7),
    }
    model = fit_recommender(summed, item_index=items, gram_sigma=0.0, n_segments=2)
    again = RecommenderModel.from_dict(json.loads(json.dumps(model.to_dict())))
    for history, segment in [(np.array([0, 1]), 0), (np.array([4]), 1)]:
        top = model.recommend(history, segment, n=4)
        np.testing.assert_array_equal(top, again.recommend(history, segment, n=4))
        assert not set(top) & set(history)
    data = model.to_dict()
    del data["vectors"]
    with pytest.raises(ValueError, match="vectors"):
        RecommenderModel.from_dict(data)


def test_choose_items_keeps_popular_items_above_noise():
    overall = np.array([5.0, 40.0, 0.5, 12.0, -3.0])
    np.testing.assert_array_equal(choose_items(overall, sigma=1.0, max_items=10), [1, 3, 0])
    np.testing.assert_array_equal(choose_items(overall, sigma=1.0, max_items=2), [1, 3])
    np.testing.assert_array_equal(choose_items(overall, sigma=100.0, max_items=10), [1])
