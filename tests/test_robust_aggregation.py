"""Robust combination: hand-computed cases, properties, and 500+ generated hostile replies."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fedseg.server.aggregation import RoundFailed, aggregate_plain
from fedseg.server.robust import RobustAggregator, RobustConfig, cap_weights, weighted_trimmed_mean
from fedseg.server.transport import Reply
from fedseg.server.validation import ReplySpec, check_reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MEDIAN = RobustConfig().cut


def test_weighted_trimmed_mean_hand_computed():
    v = np.array([1.0, 2.0, 3.0, 100.0])
    assert weighted_trimmed_mean(v, np.ones(4), MEDIAN) == pytest.approx(2.5)
    assert weighted_trimmed_mean(v, np.ones(4), 0.25) == pytest.approx(2.5)  # drops 1 and 100
    assert weighted_trimmed_mean(v, np.ones(4), 0.0) == pytest.approx(26.5)  # the plain mean
    # Weights 3:1 — the median sits inside the heavy value; a 12.5% trim keeps the weight
    # interval [0.5, 3.5]: 2.5 of the zeros and 0.5 of the ten, mean 5/3.
    assert weighted_trimmed_mean(np.array([0.0, 10.0]), np.array([3.0, 1.0]), MEDIAN) == 0.0
    assert weighted_trimmed_mean(
        np.array([0.0, 10.0]), np.array([3.0, 1.0]), 0.125
    ) == pytest.approx(5 / 3)
    assert np.isnan(weighted_trimmed_mean(np.array([1.0, 2.0]), np.zeros(2), MEDIAN))


def test_weights_are_capped_relative_to_the_median_merchant():
    weights = np.array([[1.0, 5.0], [2.0, 6.0], [100.0, 7.0]])
    qualified = np.array([[True, True], [True, True], [True, False]])
    np.testing.assert_array_equal(cap_weights(weights, qualified, 1.5), [[1, 5], [2, 6], [3, 0]])


@given(hnp.arrays(np.float64, st.integers(1, 15), elements=st.floats(-1e6, 1e6)))
def test_unweighted_median_and_mean_match_numpy(values):
    ones = np.ones(len(values))
    if len(values) % 2:
        assert weighted_trimmed_mean(values, ones, MEDIAN) == pytest.approx(
            np.median(values), abs=1e-6
        )
    assert weighted_trimmed_mean(values, ones, 0.0) == pytest.approx(
        values.mean(), rel=1e-9, abs=1e-6
    )


@given(
    honest=hnp.arrays(np.float64, st.integers(3, 12), elements=st.floats(-10, 10)),
    hostile=hnp.arrays(np.float64, st.integers(0, 5), elements=st.floats(-1e9, 1e9)),
    cap=st.floats(1.0, 3.0),
)
def test_median_stays_in_the_honest_range_while_hostile_weight_is_below_half(honest, hostile, cap):
    """Honest merchants weigh 1 each, hostile ones claim 1000× and are capped at ``cap``."""
    weights = np.concatenate([np.ones(len(honest)), np.full(len(hostile), 1000.0)])
    capped = cap_weights(weights, np.ones(len(weights), bool), cap)
    if capped[len(honest) :].sum() >= 0.5 * capped.sum():
        return  # beyond the breakdown point: no guarantee
    combined = weighted_trimmed_mean(np.concatenate([honest, hostile]), capped, MEDIAN)
    assert honest.min() - 1e-9 <= combined <= honest.max() + 1e-9


class ListTransport:
    def __init__(self, replies):
        self.replies = replies

    def node_ids(self):
        return sorted({r.node_id for r in self.replies})

    def request(self, task, payload, node_ids):
        return list(self.replies)


K, D = 4, 3
SPEC = ReplySpec(
    shapes={"sums": (K, D), "counts": (K,)}, sigmas={"sums": 3.0, "counts": 2.0}, max_norm=2.0
)


def test_noise_free_identical_merchants_give_the_plain_result():
    rng = np.random.default_rng(0)
    counts = rng.uniform(50, 100, K)
    sums = rng.uniform(-1, 1, (K, D)) * counts[:, None]
    replies = [Reply(n, payload={"sums": sums, "counts": counts}) for n in range(5)]
    spec = ReplySpec(shapes=SPEC.shapes, sigmas={"sums": 0.0, "counts": 0.0}, max_norm=2.0)
    plain = aggregate_plain("cluster_stats", range(5), replies, spec, min_clients=1)
    for method in ("median", "trimmed"):
        robust = RobustAggregator(
            ListTransport(replies), min_clients=1, config=RobustConfig(method=method)
        )
        agg = robust("cluster_stats", {}, spec, list(range(5)))
        np.testing.assert_allclose(agg.sums["counts"], plain.sums["counts"])
        np.testing.assert_allclose(agg.sums["sums"], plain.sums["sums"])


def test_histograms_keep_their_shape_under_a_merchant_claiming_100x():
    shape = np.array([[0.1, 0.4, 0.5, 0.0], [0.3, 0.3, 0.2, 0.2]])
    replies = [Reply(n, payload={"counts": 1000 * shape}) for n in range(4)]
    replies.append(Reply(9, payload={"counts": 100_000 * shape[::-1]}))  # scaled and mixed up
    spec = ReplySpec(shapes={"counts": (2, 4)}, sigmas={"counts": 0.0})
    agg = RobustAggregator(ListTransport(replies), min_clients=1)(
        "feature_histograms", {}, spec, [0, 1, 2, 3, 9]
    )
    total = (4 + RobustConfig().weight_cap) * 1000  # the big one counts 1.5× the median
    np.testing.assert_allclose(agg.sums["counts"], total * shape)


# -- generated replies: nothing crashes, nothing non-finite gets through -------------------

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
JUNK_ARRAYS = st.one_of(
    hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex128]),
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
    ),  # fmt: skip
    hnp.arrays(np.float64, st.sampled_from([(K, D), (K,), (D, K), (K, D, 1)]), elements=FLOATS),
    hnp.arrays(np.float64, st.sampled_from([(K, D), (K,)]), elements=st.floats(-50, 300)),
    st.just(np.array(["1", "x"])),
    st.just(np.array([1, None], dtype=object)),
)
VALUES = st.one_of(JUNK_ARRAYS, st.text(max_size=5), st.none(), st.integers(), FLOATS,
                   st.lists(st.floats(), max_size=4), st.binary(max_size=8))  # fmt: skip
PAYLOADS = st.one_of(
    st.dictionaries(st.sampled_from(["sums", "counts", "extra", "names"]), VALUES, max_size=4),
    st.fixed_dictionaries({"sums": VALUES, "counts": VALUES}),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=5),
    st.none(),
)
REPLIES = st.builds(
    Reply,
    node_id=st.integers(0, 7),
    payload=PAYLOADS,
    error=st.one_of(st.none(), st.none(), st.text(max_size=10)),
    size_bytes=st.one_of(st.just(0), st.integers(0, 10**7)),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=REPLIES)
def test_500_generated_replies_are_checked_without_crashing(reply):
    reason = check_reply(reply, SPEC)
    if reason is None:  # accepted: exactly the declared, finite, plausible parts
        for name, shape in SPEC.shapes.items():
            value = reply.payload[name]
            assert value.shape == shape and value.dtype.kind == "f" and np.isfinite(value).all()
    else:
        assert f"node {reply.node_id}" in reason


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replies=st.lists(REPLIES, min_size=1, max_size=6), method=st.sampled_from(["median", "trimmed"])
)
def test_generated_rounds_aggregate_finitely_or_fail_cleanly(replies, method):
    asked = list(range(8))
    for aggregate in (
        lambda: aggregate_plain("cluster_stats", asked, replies, SPEC, min_clients=1),
        lambda: RobustAggregator(
            ListTransport(replies), min_clients=1, config=RobustConfig(method=method)
        )("cluster_stats", {}, SPEC, asked),
    ):
        try:
            agg = aggregate()
        except RoundFailed as exc:
            assert "nothing is released" in str(exc)
            continue
        assert all(np.isfinite(v).all() for v in agg.sums.values())
        assert set(agg.log.contributors) | set(agg.log.rejected) == set(asked)


# -- feature moments: per-customer moments combined robustly, scaled by the capped count ------

MOMENTS = ReplySpec(shapes={"count": (1,), "sum": (2,), "square": (2,)}, sigmas={"count": 1.0})


def _merchant(node, count, sum_, square):
    payload = {"count": np.array([float(count)]), "sum": np.array(sum_, dtype=np.float64),
               "square": np.array(square, dtype=np.float64)}  # fmt: skip
    return Reply(node, payload=payload)


def _combine(replies, method="median"):
    robust = RobustAggregator(ListTransport(replies), min_clients=1, config=RobustConfig(method))
    return robust("feature_moments", {}, MOMENTS, [r.node_id for r in replies]).sums


@pytest.mark.parametrize("method", ["median", "trimmed"])
def test_moments_of_a_merchant_flipping_its_sums_do_not_move_the_per_customer_moments(method):
    """Four honest merchants of 100 customers (mean 0.5, -0.2; mean square 0.8, 0.9); a
    fifth sends the same count with its sums flipped and the largest squares its count
    allows: every reply passes validation, yet it moves nothing."""
    honest = [_merchant(n, 100, [50.0, -20.0], [80.0, 90.0]) for n in range(4)]
    hostile = _merchant(4, 100, [-50.0, 20.0], [100.0, 100.0])
    sums = _combine([*honest, hostile], method)
    np.testing.assert_allclose(sums["count"], [500.0])
    np.testing.assert_allclose(sums["sum"], [0.5 * 500, -0.2 * 500])
    np.testing.assert_allclose(sums["square"], [0.8 * 500, 0.9 * 500])


def test_a_merchant_claiming_100x_its_customers_weighs_at_most_the_cap():
    honest = [_merchant(n, 100, [50.0, -20.0], [80.0, 90.0]) for n in range(4)]
    inflated = _merchant(4, 10_000, [5000.0, -2000.0], [8000.0, 9000.0])  # consistent, × 100
    sums = _combine([*honest, inflated])
    total = 4 * 100 + 1.5 * 100  # its count is capped at 1.5 × the median merchant's
    np.testing.assert_allclose(sums["count"], [total])
    np.testing.assert_allclose(sums["sum"], [0.5 * total, -0.2 * total])


def test_moments_of_merchants_too_small_to_trust_are_summed_plainly():
    """Counts below 3σ of the count's noise (σ = 1) give no usable per-customer moments."""
    small = [_merchant(n, 2.5, [1.0, -1.0], [2.0, 2.0]) for n in range(3)]
    sums = _combine(small)
    np.testing.assert_allclose(sums["count"], [7.5])
    np.testing.assert_allclose(sums["sum"], [3.0, -3.0])
    np.testing.assert_allclose(sums["square"], [6.0, 6.0])


def test_a_small_merchant_counts_as_sent_beside_qualified_ones_but_has_no_say():
    honest = [_merchant(n, 100, [50.0, -20.0], [80.0, 90.0]) for n in range(3)]
    tiny = _merchant(3, 2.0, [2.0, 2.0], [2.0, 2.0])  # mean 1, 1: far from the others
    sums = _combine([*honest, tiny])
    np.testing.assert_allclose(sums["count"], [302.0])
    np.testing.assert_allclose(sums["sum"], [0.5 * 302, -0.2 * 302])


# -- configuration and the hand-computed parts of the cluster and histogram rules -------------


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"method": "mean"}, "robust method must be one of"),
        ({"method": "trimmed", "trim": -0.01}, "trim must be in [0, 0.5)"),
        ({"method": "trimmed", "trim": 0.5}, "trim must be in [0, 0.5)"),
        ({"weight_cap": 0.99}, "weight_cap must be at least 1"),
        ({"weight_cap": float("nan")}, "weight_cap must be at least 1"),
    ],
)
def test_a_robust_configuration_that_would_not_bound_anything_is_refused(settings, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        RobustConfig(**settings)


def test_the_edges_of_a_robust_configuration_are_allowed():
    assert RobustConfig(method="trimmed", trim=0.0).cut == 0.0
    assert RobustConfig(method="trimmed", trim=0.49).cut == 0.49
    assert RobustConfig(weight_cap=1.0).weight_cap == 1.0
    assert 0.5 - 1e-8 < RobustConfig(method="median", trim=0.1).cut < 0.5  # trim unused


def _cluster_round(replies, spec, method="trimmed", trim=0.0):
    config = RobustConfig(method=method, trim=trim)
    robust = RobustAggregator(ListTransport(replies), min_clients=1, config=config)
    return robust("cluster_displacements", {}, spec, [r.node_id for r in replies]).sums


def test_cluster_means_weigh_by_their_precision_and_the_total_is_capped():
    """k = 1, d = 1, σ_sums = 10: precisions c²/(c + σ²) of counts 100 and 50 are 50 and
    16.7 (cap 1.5 × their median, 50, binds nobody); the mean of means 1 and 4 weighted so
    is 1.75, and the total count 150; a trim of 0 is the weighted mean."""
    spec = ReplySpec(shapes={"sums": (1, 1), "counts": (1,), "distances": (2,)},
                     sigmas={"sums": 10.0, "counts": 1.0})  # fmt: skip
    replies = [
        Reply(1, payload={"sums": np.array([[100.0]]), "counts": np.array([100.0]),
                          "distances": np.array([60.0, 40.0])}),
        Reply(2, payload={"sums": np.array([[200.0]]), "counts": np.array([50.0]),
                          "distances": np.array([5.0, 45.0])}),
    ]  # fmt: skip
    sums = _cluster_round(replies, spec)
    np.testing.assert_allclose(sums["counts"], [150.0])
    np.testing.assert_allclose(sums["sums"], [[1.75 * 150.0]])
    np.testing.assert_allclose(sums["distances"], [65.0, 85.0])  # other parts are summed


def test_a_cluster_no_merchant_holds_enough_customers_of_is_summed_plainly():
    """σ_counts = 2: a count qualifies from 3σ = 6 on. Cluster 0 has qualified merchants,
    cluster 1 only counts of 5.9 (their means are noise): it falls back to the plain sum."""
    spec = ReplySpec(shapes={"sums": (2, 1), "counts": (2,)}, sigmas={"sums": 0.0, "counts": 2.0})
    replies = [
        Reply(n, payload={"sums": np.array([[6.0 * mean], [5.9 * 3]]),
                          "counts": np.array([6.0, 5.9])})
        for n, mean in enumerate([1.0, 2.0, 6.0])
    ]  # fmt: skip
    sums = _cluster_round(replies, spec, method="median")
    np.testing.assert_allclose(sums["counts"], [18.0, 3 * 5.9])
    np.testing.assert_allclose(sums["sums"], [[2.0 * 18.0], [3 * 5.9 * 3]])  # median mean 2


def test_histogram_bins_below_the_medians_noise_are_cleared():
    """Four identical merchants of 1,000 customers, σ = 1, m = 4: a median's noise is
    √(π/2)·σ·√m ≈ 2.51, so bins under 3 × 2.51 ≈ 7.5 are noise: 8 stays, 7 goes."""
    shape = np.array([[0.5, 0.49625, 0.002, 0.00175]])
    replies = [Reply(n, payload={"counts": 1000 * shape}) for n in range(4)]
    spec = ReplySpec(shapes={"counts": (1, 4)}, sigmas={"counts": 1.0})
    agg = RobustAggregator(ListTransport(replies), min_clients=1)(
        "feature_histograms", {}, spec, [0, 1, 2, 3]
    )
    np.testing.assert_allclose(agg.sums["counts"], [[2000.0, 1985.0, 8.0, 0.0]])


def test_histograms_of_merchants_too_small_to_trust_are_summed_plainly():
    """σ = 1 over 4 bins of 1 feature: a size qualifies from 3σ·√(bins/d) = 6 on."""
    counts = np.array([[2.0, 1.0, 2.0, 0.5]])  # 5.5 customers
    replies = [Reply(n, payload={"counts": counts}) for n in range(3)]
    spec = ReplySpec(shapes={"counts": (1, 4)}, sigmas={"counts": 1.0})
    agg = RobustAggregator(ListTransport(replies), min_clients=1)(
        "feature_histograms", {}, spec, [0, 1, 2]
    )
    np.testing.assert_allclose(agg.sums["counts"], 3 * counts)


def test_a_histogram_merchant_qualifies_from_3_sigma_of_its_size_estimate():
    """Its size is the mean of d row totals, of noise σ·√(bins/d): with 2 features of 4 bins
    and σ = 1 it qualifies from 3·√2 ≈ 4.2, so 6 customers are combined robustly (and the
    bin of 3 < 3 × √(π/2)·√3 ≈ 6.5 cleared), not summed."""
    counts = np.array([[5.0, 1.0, 0.0, 0.0], [3.0, 3.0, 0.0, 0.0]])
    replies = [Reply(n, payload={"counts": counts}) for n in range(3)]
    spec = ReplySpec(shapes={"counts": (2, 4)}, sigmas={"counts": 1.0})
    agg = RobustAggregator(ListTransport(replies), min_clients=1)(
        "feature_histograms", {}, spec, [0, 1, 2]
    )
    np.testing.assert_allclose(agg.sums["counts"], [[15.0, 0.0, 0.0, 0.0], [9.0, 9.0, 0.0, 0.0]])


def test_robust_histograms_check_that_every_row_counts_the_same_customers():
    """The round's spec need not say so: feature histograms always have equal row totals."""
    same = np.array([[10.0, 20, 0, 0], [0.0, 0, 15, 15]])
    replies = [Reply(n, payload={"counts": same}) for n in range(3)]
    replies.append(Reply(3, payload={"counts": same * [[1.0], [100.0]]}))
    spec = ReplySpec(shapes={"counts": (2, 4)}, sigmas={"counts": 1.0})
    agg = RobustAggregator(ListTransport(replies), min_clients=1)(
        "feature_histograms", {}, spec, [0, 1, 2, 3]
    )
    assert "different totals" in agg.log.rejected[3] and agg.log.contributors == (0, 1, 2)


def test_moments_of_a_merchant_at_exactly_3_sigma_are_combined_robustly():
    at_threshold = [
        _merchant(n, 3.0, [3.0 * m, 0.0], [3.0, 3.0]) for n, m in enumerate([0.1, 0.2, 0.6])
    ]
    sums = _combine(at_threshold)  # σ_count = 1: 3.0 qualifies, so the median mean is used
    np.testing.assert_allclose(sums["sum"], [0.2 * 9.0, 0.0])


def test_the_size_estimates_noise_uses_the_exact_ratio_of_bins_to_features():
    """3 features of 4 bins, σ = 1: a size qualifies from 3·√(4/3) ≈ 3.46, so 3.2 customers
    are summed plainly (a bin of 3 kept), not combined robustly (where it would be cleared)."""
    counts = np.tile([2.2, 1.0, 0.0, 0.0], (3, 1))
    replies = [Reply(n, payload={"counts": counts}) for n in range(3)]
    spec = ReplySpec(shapes={"counts": (3, 4)}, sigmas={"counts": 1.0})
    agg = RobustAggregator(ListTransport(replies), min_clients=1)(
        "feature_histograms", {}, spec, [0, 1, 2]
    )
    np.testing.assert_allclose(agg.sums["counts"], 3 * counts)


def test_moments_qualify_from_3_sigma_of_the_count_at_any_declared_sigma():
    spec = ReplySpec(shapes=MOMENTS.shapes, sigmas={"count": 2.0})  # from 6 customers on

    def combined(count):
        replies = [_merchant(n, count, [count * m, 0.0], [count, count])
                   for n, m in enumerate([0.1, 0.2, 0.6])]  # fmt: skip
        robust = RobustAggregator(ListTransport(replies), min_clients=1)
        return robust("feature_moments", {}, spec, [0, 1, 2]).sums["sum"][0]

    assert combined(6.0) == pytest.approx(0.2 * 18.0)  # the median mean
    assert combined(5.9) == pytest.approx(0.9 * 5.9)  # summed plainly
    spec = ReplySpec(shapes=MOMENTS.shapes, sigmas={"count": 0.0})  # no noise: from 1 on
    assert combined(1.0) == pytest.approx(0.2 * 3.0)


def test_an_empty_merchant_without_noise_is_left_out_of_the_histogram_shapes():
    """At ε = ∞ (σ = 0) a merchant with no customers has size 0: it does not qualify (its
    shares would be 0/0) and adds nothing."""
    shape = np.array([[0.5, 0.5, 0.0, 0.0]])
    replies = [Reply(n, payload={"counts": 10 * shape}) for n in range(2)]
    replies.append(Reply(2, payload={"counts": np.zeros((1, 4))}))
    spec = ReplySpec(shapes={"counts": (1, 4)}, sigmas={"counts": 0.0})
    agg = RobustAggregator(ListTransport(replies), min_clients=1)(
        "feature_histograms", {}, spec, [0, 1, 2]
    )
    np.testing.assert_allclose(agg.sums["counts"], 20 * shape)
