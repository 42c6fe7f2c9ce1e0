"""Reply validation: every kind of bad reply is rejected with a reason naming node and field,
the round goes on while ``min_clients`` remain, and fails cleanly (nothing released) below."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fedseg.server.aggregation import RoundFailed, aggregate_plain, screen_replies
from fedseg.server.robust import RobustAggregator
from fedseg.server.transport import Reply
from fedseg.server.validation import ReplySpec, check_reply, left_out_table, oversized

K, D = 3, 2
SPEC = ReplySpec(
    shapes={"sums": (K, D), "counts": (K,)}, sigmas={"sums": 2.0, "counts": 1.0}, max_norm=1.5
)


def _good(scale: float = 1.0) -> dict:
    # 10 customers per cluster, each of norm ≤ 1.5: sums of norm ≤ 15 are feasible.
    return {
        "sums": scale * np.array([[3.0, 4.0], [-6.0, 0.0], [0.0, 1.0]]),
        "counts": np.full(K, 10.0),
    }


def _with(name: str, value: object) -> dict:
    return dict(_good(), **{name: value})


BAD_REPLIES = {
    "nan sums": (_with("sums", np.array([[np.nan, 0], [0, 0], [0, 0]])), "'sums'", "NaN"),
    "+inf counts": (_with("counts", np.array([1.0, np.inf, 1.0])), "'counts'", "infinite"),
    "-inf sums": (_with("sums", np.full((K, D), -np.inf)), "'sums'", "infinite"),
    "wrong shape": (_with("sums", np.zeros((K + 1, D))), "'sums'", "shape"),
    "transposed": (_with("sums", np.zeros((D, K))), "'sums'", "shape"),
    "scalar counts": (_with("counts", np.float64(3.0)), "'counts'", "expected an array"),
    "int dtype": (_with("counts", np.full(K, 10, dtype=np.int64)), "'counts'", "dtype"),
    "complex dtype": (_with("sums", np.zeros((K, D), complex)), "'sums'", "dtype"),
    "bool dtype": (_with("counts", np.ones(K, bool)), "'counts'", "dtype"),
    "text array": (_with("counts", np.array(["1", "2", "3"])), "'counts'", "dtype"),
    "object array": (
        _with("counts", np.array([1.0, "x", None], dtype=object)),
        "'counts'",
        "dtype",
    ),
    "string": (_with("sums", "DROP TABLE"), "'sums'", "str"),
    "list": (_with("counts", [10.0, 10.0, 10.0]), "'counts'", "list"),
    "bytes": (_with("sums", b"\x00" * 48), "'sums'", "bytes"),
    "missing": ({"counts": np.full(K, 10.0)}, "'sums'", "missing"),
    "negative counts": (_with("counts", np.array([10.0, -7.0, 10.0])), "'counts'", "negative"),
    "sums beyond counts": (_good(scale=100.0), "'sums'", "larger than its counts allow"),
    "oversized decoded": (_with("extra", np.zeros(10_000)), "'payload'", "bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPLIES))
def test_each_bad_reply_is_rejected_naming_node_and_field(case):
    payload, field, words = BAD_REPLIES[case]
    reason = check_reply(Reply(17, payload=payload), SPEC)
    assert reason is not None and "node 17" in reason and field in reason and words in reason


def test_a_valid_reply_and_noise_sized_deviations_pass():
    assert check_reply(Reply(1, payload=_good()), SPEC) is None
    # Counts 5σ below zero and sums 5σ beyond the bound are what noise can do.
    noisy = {
        "sums": np.array([[1.5 * 10 + 5 * 2.0 + 0.0, 0], [0, 0], [0, 0]]),
        "counts": np.array([10, -5, 0.0]),
    }
    assert check_reply(Reply(1, payload=noisy), SPEC) is None


def test_payload_that_is_not_a_mapping_and_error_replies():
    assert "'payload'" in check_reply(Reply(4, payload=[1, 2, 3]), SPEC)
    assert "node 4" in check_reply(Reply(4, payload="junk"), SPEC)
    assert "boom" in check_reply(Reply(4, error="RuntimeError: boom"), SPEC)


def test_size_rule_applies_to_the_declared_wire_size_before_any_decoding():
    limit = SPEC.max_bytes()
    assert limit == 2 * 8 * (K * D + K) + 4096
    assert oversized(3, limit, SPEC) is None
    reason = oversized(3, limit + 1, SPEC)
    assert "node 3" in reason and "'payload'" in reason and str(limit + 1) in reason
    # check_reply rejects on the transport's byte count even if the payload looks fine.
    assert "bytes" in check_reply(Reply(3, payload=_good(), size_bytes=limit + 1), SPEC)


def test_histogram_rows_must_count_the_same_customers():
    spec = ReplySpec(shapes={"counts": (2, 4)}, sigmas={"counts": 1.0}, equal_row_totals=True)
    same = np.array([[10.0, 20, 0, 0], [0.0, 0, 15, 15]])
    assert check_reply(Reply(2, payload={"counts": same}), spec) is None
    # Row totals may differ by noise: 6σ·√(2·4) ≈ 17.
    assert (
        check_reply(Reply(2, payload={"counts": same + [[16.0, 0, 0, 0], [0] * 4]}), spec) is None
    )
    inflated = same * [[1.0], [100.0]]
    reason = check_reply(Reply(2, payload={"counts": inflated}), spec)
    assert "node 2" in reason and "'counts'" in reason and "different totals" in reason


def test_round_continues_above_min_clients_and_names_every_left_out_node():
    bad = {i + 10: payload for i, (payload, _, _) in enumerate(BAD_REPLIES.values())}
    replies = [Reply(1, payload=_good()), Reply(2, payload=_good())]
    replies += [Reply(n, payload=p) for n, p in bad.items()]
    replies += [Reply(99, error="TimeoutError: client raised")]
    asked = [1, 2, 3, *bad, 99]  # node 3 never answers
    agg = aggregate_plain("cluster_stats", asked, replies, SPEC, min_clients=2)
    assert agg.log.contributors == (1, 2)
    np.testing.assert_allclose(agg.sums["counts"], [20, 20, 20])
    assert set(agg.log.rejected) == {3, 99, *bad}
    assert all(f"node {n}" in agg.log.rejected[n] for n in agg.log.rejected)
    assert "deadline" in agg.log.rejected[3] and "client raised" in agg.log.rejected[99]
    with pytest.raises(
        RoundFailed, match="only 2 valid replies, at least 3 needed; nothing is released"
    ):
        aggregate_plain("cluster_stats", asked, replies, SPEC, min_clients=3)


def test_duplicate_and_unasked_replies_do_not_count():
    replies = [
        Reply(1, payload=_good()),
        Reply(1, payload=_good(scale=-1)),
        Reply(7, payload=_good()),
    ]
    valid, log = screen_replies("cluster_stats", [1, 2], replies, SPEC)
    assert valid == [] and "answered twice" in log.rejected[1] and "deadline" in log.rejected[2]
    assert 7 not in log.rejected and log.contributors == ()


class ListTransport:
    """A transport whose merchants answer with fixed replies (records what it was asked)."""

    def __init__(self, replies):
        self.replies = replies
        self.max_bytes = None

    def node_ids(self):
        return [r.node_id for r in self.replies]

    def request(self, task, payload, node_ids, *, max_bytes=None):
        self.max_bytes = max_bytes
        return [r for r in self.replies if r.node_id in node_ids]


def test_robust_aggregator_validates_asks_for_a_size_limit_and_fails_cleanly():
    transport = ListTransport(
        [
            Reply(1, payload=_good()),
            Reply(2, payload=_good()),
            Reply(3, payload=_with("counts", np.full(K, np.nan))),
        ]
    )
    agg = RobustAggregator(transport, min_clients=2)(
        "cluster_stats", {"release": "cluster_stats"}, SPEC, [1, 2, 3]
    )
    assert transport.max_bytes == SPEC.max_bytes()
    assert agg.log.contributors == (1, 2) and "NaN" in agg.log.rejected[3]
    np.testing.assert_allclose(agg.sums["sums"], 2 * _good()["sums"])
    with pytest.raises(RoundFailed, match="nothing is released"):
        RobustAggregator(transport, min_clients=3)("cluster_stats", {}, SPEC, [1, 2, 3])


def test_a_reply_must_answer_this_request_and_hold_only_what_was_asked():
    from dataclasses import replace

    spec = replace(SPEC, request_id=7)
    assert check_reply(Reply(4, payload={**_good(), "request_id": 7}), spec) is None
    replayed = check_reply(Reply(4, payload={**_good(), "request_id": 6}), spec)
    assert "node 4" in replayed and "'request_id'" in replayed and "replayed" in replayed
    missing = check_reply(Reply(4, payload=_good()), spec)
    assert "'request_id'" in missing
    extra = check_reply(Reply(4, payload={**_good(), "request_id": 7, "notes": 1.0}), spec)
    assert extra == "node 4: field 'notes' was not asked for"


def test_cluster_counts_must_add_up_to_the_merchants_own_histograms():
    from dataclasses import replace

    # σ of a summed count: 1·√3; of the histogram size: 2 → together ≈ 2.6, 6σ ≈ 15.9.
    spec = replace(SPEC, sizes={4: (30.0 + 15.0, 2.0), 5: (30.0 + 16.5, 2.0)})
    assert check_reply(Reply(4, payload=_good()), spec) is None  # 30 vs 45: within 6σ
    reason = check_reply(Reply(5, payload=_good()), spec)
    assert reason.startswith("node 5: field 'counts' adds up to 30 customers")
    # No size known (its histograms were rejected or late): its counts cannot be trusted.
    assert check_reply(Reply(6, payload=_good()), spec) == (
        "node 6: field 'counts' cannot be checked: the merchant's range histograms gave no "
        "usable customer count"
    )
    assert check_reply(Reply(6, payload=_good()), replace(spec, sizes=None)) is None


# -- feature moments: Σu, Σu² and Σuuᵀ of customers mapped into [-1, 1]^d --------------------

MOMENTS = ReplySpec(
    shapes={"count": (1,), "sum": (2,), "square": (2,), "second": (2, 2)},
    sigmas={"count": 1.0, "sum": 0.5, "square": 0.5, "second": 0.5},
)
SLACK_OF_PARTS = 6 * (0.5 + 1.0)  # 6σ of the part plus 6σ of the count: 9


def _moments(count=10.0, **parts) -> dict:
    good = {"count": np.array([count]), "sum": np.array([3.0, -4.0]),
            "square": np.array([5.0, 6.0]), "second": np.array([[5.0, 1.0], [1.0, 6.0]])}  # fmt: skip
    return {**good, **{k: np.asarray(v, dtype=np.float64) for k, v in parts.items()}}


# (payload, accepted?) on each side of every bound: a count of 10, slack 9 for the parts.
MOMENT_EDGES = {
    "good": (_moments(), None),
    "count a little below 0": (_moments(-5.5, sum=[0, 0], square=[0, 0], second=np.eye(2) * 0), None),
    "count below 0 beyond the noise": (_moments(-6.5), "field 'count' is implausible (-6.5)"),
    "count near the largest": (_moments(1e9 + 5), None),
    "count beyond the largest": (_moments(1e9 + 7), "field 'count' is implausible"),
    "sum at count + slack": (_moments(sum=[18.5, 0]), None),
    "sum beyond count + slack": (_moments(sum=[19.5, 0]), "field 'sum' is larger than its count"),
    "sum at -(count + slack)": (_moments(sum=[-18.5, 0]), None),
    "sum below -(count + slack)": (_moments(sum=[0, -19.5]), "field 'sum' is larger than its"),
    "square a little negative": (_moments(square=[-8.5, 0]), None),
    "square negative beyond": (_moments(square=[-9.5, 0]), "field 'square' is larger than its"),
    "square beyond count": (_moments(square=[0, 19.5]), "field 'square' is larger than its"),
    "gram off-diagonal at -(count + slack)": (_moments(second=[[5, -18.5], [-18.5, 6]]), None),
    "gram off-diagonal below": (_moments(second=[[5, -19.5], [-19.5, 6]]), "field 'second'"),
    "gram diagonal negative beyond": (_moments(second=[[-9.5, 0], [0, 6]]), "field 'second'"),
    "gram beyond count": (_moments(second=[[19.5, 0], [0, 6]]), "field 'second'"),
    "a count below 0 within the noise, sum within the slack": (
        _moments(-3.0, sum=[8.5, 0], square=[0, 0], second=np.zeros((2, 2))), None),
    "a count below 0, gram off-diagonal within the slack": (
        _moments(-3.0, sum=[0, 0], square=[0, 0], second=[[0, -8.5], [-8.5, 0]]), None),
    "gram diagonal a little negative": (_moments(second=[[-8.5, 0], [0, 6]]), None),
    "no customers, sum within the noise": (
        _moments(0.0, sum=[8.5, 0], square=[0, 0], second=np.zeros((2, 2))), None),
    "no customers, sum beyond the noise": (
        _moments(0.0, sum=[9.5, 0], square=[0, 0], second=np.zeros((2, 2))), "field 'sum'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MOMENT_EDGES))
def test_moments_are_checked_against_their_own_count_beyond_the_noise(case):
    payload, words = MOMENT_EDGES[case]
    reason = check_reply(Reply(9, payload=payload), MOMENTS)
    if words is None:
        assert reason is None, reason
    else:
        assert reason is not None and reason.startswith(f"node 9: {words}"), reason


def test_a_moments_part_without_declared_noise_gets_the_counts_slack_only():
    spec = ReplySpec(shapes=MOMENTS.shapes, sigmas={"count": 1.0})  # slack 6σ_count = 6
    assert check_reply(Reply(9, payload=_moments(sum=[15.5, 0])), spec) is None
    assert "field 'sum'" in check_reply(Reply(9, payload=_moments(sum=[16.5, 0])), spec)


def test_the_bounds_scale_with_the_declared_noise_not_a_power_of_it():
    counts_spec = replace(SPEC, sigmas={"sums": 2.0, "counts": 2.0})  # 6σ = 12
    assert (
        check_reply(Reply(8, payload=_with("counts", np.array([10.0, -11.9, 0]))), counts_spec)
        is None
    )
    assert "negative beyond the noise" in check_reply(
        Reply(8, payload=_with("counts", np.array([10.0, -12.1, 0]))), counts_spec
    )
    assert "implausibly large" in check_reply(
        Reply(8, payload=_with("counts", np.array([10.0, 1e9 + 13, 0]))), counts_spec
    )
    moments_spec = replace(MOMENTS, sigmas={**MOMENTS.sigmas, "count": 2.0})
    assert check_reply(Reply(9, payload=_moments(1e9 + 11)), moments_spec) is None
    assert check_reply(Reply(9, payload=_moments(-11.5)), moments_spec) is None
    assert "'count' is implausible" in check_reply(
        Reply(9, payload=_moments(1e9 + 13)), moments_spec
    )


def test_a_part_left_out_of_the_spec_does_not_stop_the_checks_of_the_others():
    spec = ReplySpec(shapes={"count": (1,), "square": (2,)}, sigmas={"count": 1.0})
    bad = {"count": np.array([10.0]), "square": np.array([0.0, 16.5])}  # beyond 10 + 6
    assert "field 'square'" in check_reply(Reply(9, payload=bad), spec)


def test_moments_without_a_gram_are_checked_part_by_part():
    spec = ReplySpec(shapes={k: v for k, v in MOMENTS.shapes.items() if k != "second"},
                     sigmas=MOMENTS.sigmas)  # fmt: skip
    payload = {k: v for k, v in _moments().items() if k != "second"}
    assert check_reply(Reply(9, payload=payload), spec) is None
    bad = {**payload, "square": np.array([0.0, 19.5])}
    assert "field 'square'" in check_reply(Reply(9, payload=bad), spec)


def test_a_moments_count_must_match_the_merchants_own_histograms():
    spec = replace(MOMENTS, sizes={9: (10.0, 0.5)})  # σ of the sum: hypot(1, 0.5) ≈ 1.12
    assert check_reply(Reply(9, payload=_moments(16.5)), spec) is None  # 5.8σ
    reason = check_reply(Reply(9, payload=_moments(17.0)), spec)  # 6.3σ
    assert reason == (
        "node 9: field 'count' adds up to 17 customers, the merchant's histograms say 10 "
        "(more than 6σ apart)"
    )


# -- the bounds of the counts and sums rules, on both sides -----------------------------------


@pytest.mark.parametrize(
    ("counts", "words"),
    [
        ([10.0, -5.9, 0.0], None),  # 5.9σ below zero: noise can do that
        ([10.0, -6.1, 0.0], "field 'counts' is negative beyond the noise (-6.1)"),
        ([10.0, 1e9 + 5, 0.0], None),
        ([10.0, 1e9 + 7, 0.0], "field 'counts' is implausibly large (1e+09)"),
    ],
)
def test_counts_are_bounded_6_sigma_beyond_what_a_merchant_can_hold(counts, words):
    reason = check_reply(Reply(8, payload=_with("counts", np.array(counts))), SPEC)
    assert reason == (None if words is None else f"node 8: {words}")


# ‖sums_j‖ ≤ R·(max(count_j, 0) + 6σ_counts) + 6σ_sums·√d: rows of 40.97, 25.97 and 25.97.
SUM_EDGES = [
    ([[40.5, 0.0], [0.0, 25.5], [25.5, 0.0]], None),
    ([[41.5, 0.0], [0.0, 0.0], [0.0, 0.0]], "row 0: norm 41.5 > 41"),
    ([[0.0, 0.0], [0.0, 26.5], [0.0, 0.0]], "row 1: norm 26.5 > 26"),  # a negative count
    ([[0.0, 0.0], [0.0, 0.0], [18.8, 18.8]], "row 2: norm 26.6 > 26"),  # the norm, not a max
    ([[40.0, 0.0], [0.0, 26.5], [0.0, 0.0]], "row 1: norm 26.5 > 26"),  # the row beyond
]


@pytest.mark.parametrize(("sums", "words"), SUM_EDGES)
def test_sums_are_bounded_by_their_counts_radius_and_noise(sums, words):
    payload = {"sums": np.array(sums), "counts": np.array([10.0, -3.0, 0.0])}
    reason = check_reply(Reply(8, payload=payload), SPEC)
    if words is None:
        assert reason is None, reason
    else:
        assert reason == f"node 8: field 'sums' is larger than its counts allow ({words})", reason


def test_histogram_totals_may_differ_by_6_sigma_of_two_rows_and_no_more():
    spec = ReplySpec(shapes={"counts": (2, 4)}, sigmas={"counts": 1.0}, equal_row_totals=True)
    same = np.array([[10.0, 20, 0, 0], [0.0, 0, 15, 15]])
    apart = same + [[18.0, 0, 0, 0], [0] * 4]  # 6σ·√8 ≈ 16.97 < 18
    assert "different totals (30 to 48)" in check_reply(Reply(2, payload={"counts": apart}), spec)
    unrelated = replace(spec, equal_row_totals=False)  # rows of different customers
    assert check_reply(Reply(2, payload={"counts": apart}), unrelated) is None


def test_left_out_table_counts_each_nodes_rounds_late_ones_and_its_first_reason():
    history = [
        {"task": "describe", "rejected": {"10": "node 10: no reply before the deadline"}},
        {"task": "plan", "rejected": {"9": "node 9: a | b", "10": "node 10: left out"}},
        {"task": "feature_ranges", "rejected": {}},
        {"rejected": {"2": "node 2: error reply: boom", "10": "node 10: no reply before the "
                      "deadline"}},
    ]  # fmt: skip
    assert left_out_table(history).splitlines() == [
        "| node | rounds left out | late | first reason |",
        "|---|---|---|---|",
        "| 2 | 1 | 0 | ?: node 2: error reply: boom |",
        "| 9 | 1 | 0 | plan: node 9: a \\| b |",
        "| 10 | 3 | 2 | describe: node 10: no reply before the deadline |",
    ]
    assert left_out_table(history[2:3]) == "Every merchant contributed to every round."


def test_noise_free_histograms_of_a_large_merchant_may_differ_by_rounding():
    """At ε = ∞ (σ = 0) nothing but rounding separates the row totals: 10⁻⁶ of the total
    (30 of 3·10⁷ customers) is allowed, more is not."""
    spec = ReplySpec(shapes={"counts": (2, 2)}, sigmas={"counts": 0.0}, equal_row_totals=True)
    close = np.array([[1.5e7, 1.5e7], [1.0e7, 2.0e7 + 20]])
    assert check_reply(Reply(2, payload={"counts": close}), spec) is None
    apart = np.array([[1.5e7, 1.5e7], [1.0e7, 2.0e7 + 40]])
    assert "different totals" in check_reply(Reply(2, payload={"counts": apart}), spec)
