"""Secure-aggregation rounds end to end: exact sums under dropouts, clean aborts, bad messages."""

import numpy as np
import pytest
from fedseg.privacy.secagg import (
    EncodingShapeError,
    SecAggAborted,
    SecAggConfigError,
    SecAggLimits,
    SecAggParams,
    SecAggProtocolError,
    run_secagg_round,
    simulation_signing_key,
)
from fedseg.privacy.secagg.client import SecAggClient
from secagg_adversary import SPEC, Federation

MERCHANTS = [f"shop-{i:02d}" for i in range(20)]


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    return {
        m: {"sums": rng.normal(0, 500, (4, 10)), "counts": rng.integers(0, 900, 4) * 1.0}
        for m in MERCHANTS
    }


def plain_sum(inputs, merchants):
    return {name: sum(inputs[m][name] for m in merchants) for name, _ in SPEC}


def assert_exact(outcome, inputs, merchants):
    assert outcome.contributors == sorted(merchants)
    step = outcome.session.config.quantization_step
    expected = plain_sum(inputs, merchants)
    for name in expected:
        assert np.abs(outcome.sums[name] - expected[name]).max() <= len(merchants) * step / 2


def test_no_dropout_releases_the_plain_sum(inputs):
    assert_exact(run_secagg_round(inputs, max_abs_value=1e4), inputs, MERCHANTS)


def test_default_tolerates_30_percent_dropping_before_the_masked_input(inputs):
    gone = MERCHANTS[1::3][:6]  # floor(0.3 * 20) = 6
    outcome = run_secagg_round(inputs, max_abs_value=1e4, drop_before_masked=gone)
    assert_exact(outcome, inputs, [m for m in MERCHANTS if m not in gone])


@pytest.mark.parametrize("stage", ["drop_before_signing", "drop_before_unmask"])
def test_30_percent_dropping_after_the_masked_input_still_count(inputs, stage):
    late = MERCHANTS[::3][:6]
    outcome = run_secagg_round(inputs, max_abs_value=1e4, **{stage: late})
    assert_exact(outcome, inputs, MERCHANTS)


def test_dropouts_at_every_stage_together(inputs):
    silent, unshared, late = MERCHANTS[:1], MERCHANTS[5:7], MERCHANTS[9:12]
    outcome = run_secagg_round(
        inputs, max_abs_value=1e4, drop_before_shares=silent, drop_before_masked=unshared,
        drop_before_unmask=late,
    )  # fmt: skip
    assert_exact(outcome, inputs, [m for m in MERCHANTS if m not in silent + unshared])


def test_roster_members_that_never_answer_count_as_dropped(inputs):
    from fedseg.privacy.secagg import simulation_roster

    roster = simulation_roster(0, [*MERCHANTS, "offline-a", "offline-b"])
    outcome = run_secagg_round(inputs, max_abs_value=1e4, roster=roster)
    assert outcome.session.config.num_clients == 22  # n is the pinned roster's size
    assert_exact(outcome, inputs, MERCHANTS)


def test_sum_is_the_same_in_two_rounds_with_fresh_keys(inputs):
    first = run_secagg_round(inputs, max_abs_value=1e4, round_id=1)
    second = run_secagg_round(inputs, max_abs_value=1e4, round_id=2)
    assert first.session.session_id != second.session.session_id
    assert all(np.array_equal(first.sums[name], second.sums[name]) for name in first.sums)


def test_sparse_graph_round_with_30_percent_dropouts():
    rng = np.random.default_rng(5)
    names = [f"m{i:03d}" for i in range(120)]
    inputs = {m: {"sums": rng.uniform(-99, 99, (4, 10)), "counts": np.ones(4)} for m in names}
    gone, late = names[::10], names[5::10][:24]  # 12 + 24 = 36 = floor(0.3 * 120)
    outcome = run_secagg_round(inputs, max_abs_value=100.0, drop_before_masked=gone,
                               drop_before_unmask=late)  # fmt: skip
    assert outcome.session.config.neighbours < 119
    assert_exact(outcome, inputs, [m for m in names if m not in gone])


def test_one_dropout_past_the_tolerance_aborts_naming_the_option(inputs):
    gone = MERCHANTS[:7]  # 7 > floor(0.3 * 20)
    with pytest.raises(SecAggAborted, match=r"13 of 20 .* m_min = 14 .* dropout tolerance"):
        run_secagg_round(inputs, max_abs_value=1e4, drop_before_masked=gone)


def test_a_higher_tolerance_lets_the_same_dropouts_through(inputs):
    gone = MERCHANTS[:7]
    outcome = run_secagg_round(inputs, max_abs_value=1e4, drop_before_masked=gone,
                               params=SecAggParams(dropout_tolerance=0.4))  # fmt: skip
    assert_exact(outcome, inputs, MERCHANTS[7:])


def test_too_few_unmask_answers_abort_and_release_nothing():
    fed = Federation(20)
    masked = fed.honest_until_masked()
    server = fed.server
    survivors = server.collect_masked({100 + r: m for r, m in masked.items()})
    signatures = fed.ask("sign_survivors", {n - 100: m for n, m in survivors.items()})
    certificates = server.collect_signatures({100 + r: s for r, s in signatures.items()})
    answers = fed.ask("unmask", {n - 100: m for n, m in certificates.items()})
    few = dict(list(answers.items())[: fed.session.config.threshold - 1])
    with pytest.raises(SecAggAborted, match="shares of merchant rank"):
        server.collect_unmask({100 + r: a for r, a in few.items()})
    assert server.contributors_ == []
    with pytest.raises(SecAggAborted, match="during aborted"):
        server.collect_unmask({100 + r: a for r, a in answers.items()})


def test_malformed_stale_and_oversized_replies_count_as_dropouts():
    fed = Federation(20)
    adverts = fed.ask("advertise", {r: None for r in range(20)})
    fed.adverts = adverts
    adverts[0] = {**adverts[0], "keys": b"short"}
    adverts[1] = {**adverts[1], "round": 6}
    adverts[2] = "garbage"
    adverts[3] = {**adverts[3], "extra": np.zeros(10**6)}  # unknown keys: refused whole
    adverts[4] = {**adverts[4], "merchant": "not-in-roster"}
    server = fed.server
    lists = server.collect_keys({100 + r: a for r, a in adverts.items()})
    assert sorted(lists) == [100 + r for r in range(5, 20)]
    shares = fed.ask("share_keys", {n - 100: m for n, m in lists.items()})
    inboxes = server.collect_shares({100 + r: s for r, s in shares.items()})
    masked = fed.ask("masked", {n - 100: m for n, m in inboxes.items()})
    masked[5] = {**masked[5], "masked": masked[5]["masked"].astype(float)}
    masked[6] = {**masked[6], "masked": masked[6]["masked"][:-1]}
    with pytest.raises(SecAggAborted, match="13 of 20 merchants sent usable masked inputs"):
        server.collect_masked({100 + r: m for r, m in masked.items()})


def test_tampered_share_ciphertext_is_ignored_never_revealed():
    fed = Federation(20)
    adverts = fed.ask("advertise", {r: None for r in range(20)})
    fed.adverts = adverts
    server = fed.server
    lists = server.collect_keys({100 + r: a for r, a in adverts.items()})
    shares = fed.ask("share_keys", {n - 100: m for n, m in lists.items()})
    inboxes = server.collect_shares({100 + r: s for r, s in shares.items()})
    victim, sender = 104, next(iter(inboxes[104]["inbox"]))
    blob = inboxes[victim]["inbox"][sender]
    inboxes[victim]["inbox"][sender] = blob[:20] + bytes([blob[20] ^ 0xFF]) + blob[21:]
    masked = fed.ask("masked", {n - 100: m for n, m in inboxes.items()})
    survivors = server.collect_masked({100 + r: m for r, m in masked.items()})
    signatures = fed.ask("sign_survivors", {n - 100: m for n, m in survivors.items()})
    certificates = server.collect_signatures({100 + r: s for r, s in signatures.items()})
    answers = fed.ask("unmask", {n - 100: m for n, m in certificates.items()})
    assert sender not in answers[4]["self_mask_shares"]
    released = server.collect_unmask({100 + r: a for r, a in answers.items()})
    assert np.allclose(released["counts"], fed.true_sum(range(20))["counts"])


def test_forged_share_is_detected_and_skipped():
    fed = Federation(20)
    masked = fed.honest_until_masked()
    server = fed.server
    survivors = server.collect_masked({100 + r: m for r, m in masked.items()})
    signatures = fed.ask("sign_survivors", {n - 100: m for n, m in survivors.items()})
    certificates = server.collect_signatures({100 + r: s for r, s in signatures.items()})
    answers = fed.ask("unmask", {n - 100: m for n, m in certificates.items()})
    owner = next(iter(answers[0]["self_mask_shares"]))
    answers[0]["self_mask_shares"][owner] = bytes(36)
    released = server.collect_unmask({100 + r: a for r, a in answers.items()})
    assert np.allclose(released["counts"], fed.true_sum(range(20))["counts"])


def test_stages_out_of_order_are_refused_and_a_refusal_is_final():
    fed = Federation(5)
    client = fed.clients[0]
    with pytest.raises(SecAggProtocolError, match="share called during advertise"):
        client.share_keys({"round": 7})
    client = fed.clients[1]
    client.advertise_keys()
    with pytest.raises(SecAggProtocolError, match="malformed advertisement list"):
        client.share_keys({"round": 7, "ranks": np.array([9], np.uint32)})
    with pytest.raises(SecAggProtocolError, match="share called during aborted"):
        client.share_keys({"round": 7})


def test_clipping_replaces_range_errors_and_stays_local():
    """A value outside the range is clipped (post-processing), counted only at the
    merchant, and no error anywhere carries it."""
    fed = Federation(5)
    fed.inputs[0]["counts"] = np.array([0.0, 98765.4321, np.nan, -np.inf])
    masked = fed.honest_until_masked()
    assert fed.clients[0].clipped_ == 3
    # The masked words are uniform; every other field is scanned for the value.
    besides_words = {key: value for key, value in masked[0].items() if key != "masked"}
    assert "clipped" not in masked[0] and "98765" not in repr(besides_words)
    bad = {"sums": np.zeros((3, 2)), "counts": np.zeros(4)}
    with pytest.raises(EncodingShapeError, match=r"'sums' has shape \(3, 2\)") as error:
        Federation(5).clients[0].masked_input(bad, {})
    assert "98765" not in str(error.value)


def test_a_merchant_refuses_parameters_outside_its_own_limits():
    fed = Federation(20, params=SecAggParams(dropout_tolerance=0.45))
    name = fed.names[0]
    key = simulation_signing_key(fed.seed, name)
    with pytest.raises(SecAggConfigError, match="exceeds this merchant's limit 0.4"):
        SecAggClient(fed.session, merchant=name, node_id=1, signing_key=key, used_sessions=set(),
                     limits=SecAggLimits(max_dropout_tolerance=0.4))  # fmt: skip
    with pytest.raises(SecAggConfigError, match="below this merchant's assumption 0.05"):
        SecAggClient(Federation(20).session, merchant=name, node_id=1, signing_key=key,
                     used_sessions=set(), limits=SecAggLimits(min_collusion=0.05))  # fmt: skip
    with pytest.raises(SecAggConfigError, match="infeasible"):
        SecAggParams(dropout_tolerance=0.5)
    with pytest.raises(SecAggConfigError, match="does not match the pinned roster"):
        SecAggClient(fed.session, merchant=name, node_id=1, used_sessions=set(),
                     signing_key=simulation_signing_key(9, name))  # fmt: skip


def test_a_run_of_k_over_2_dropped_ring_neighbours_aborts_before_anything_leaves():
    """All 14 ring neighbours on one side of merchant u drop before masking (an event of
    probability <= 2^-20 under random dropouts within the tolerance): the merchants would
    refuse to unmask u, so the server aborts before the consistency round, saying why."""
    from fedseg.privacy.secagg.simulate import simulation_session

    rng = np.random.default_rng(8)
    names = [f"m{i:03d}" for i in range(100)]
    inputs = {m: {"sums": rng.uniform(-9, 9, (4, 10)), "counts": np.ones(4)} for m in names}
    session = simulation_session(names, vector_spec=SPEC, max_abs_value=100.0)
    gone = [names[r] for r in session.graph.sides(0)[0]]
    with pytest.raises(SecAggAborted, match="no surviving ring neighbour on one side"):
        run_secagg_round(inputs, max_abs_value=100.0, drop_before_masked=gone)


def test_every_stage_message_survives_the_flat_wire_form():
    """The Flower adapters carry messages flattened (wire.py); a round run entirely through
    flatten/unflatten in both directions gives the same exact sum."""
    from fedseg.privacy.secagg.wire import flatten, unflatten

    fed = Federation(20)
    server = fed.server

    def carry(messages):
        return {k: unflatten(flatten(m)) for k, m in messages.items()}

    adverts = carry({100 + r: fed.clients[r].advertise_keys() for r in range(20)})
    lists = carry(server.collect_keys(adverts))
    shares = carry({n: fed.clients[n - 100].share_keys(m) for n, m in lists.items()})
    inboxes = carry(server.collect_shares(shares))
    masked = carry(
        {n: fed.clients[n - 100].masked_input(fed.inputs[n - 100], m) for n, m in inboxes.items()}
    )
    survivors = carry(server.collect_masked(masked))
    signed = carry({n: fed.clients[n - 100].sign_survivors(m) for n, m in survivors.items()})
    certificates = carry(server.collect_signatures(signed))
    answers = carry({n: fed.clients[n - 100].unmask(m) for n, m in certificates.items()})
    released = server.collect_unmask(answers)
    assert np.allclose(released["counts"], fed.true_sum(range(20))["counts"])


def test_well_formed_replies_fit_the_size_limit_the_adapter_checks_before_decoding():
    from fedseg.privacy.secagg import max_reply_bytes

    fed = Federation(20)
    config = fed.session.config

    def size(payload):
        return sum(
            v.nbytes if isinstance(v, np.ndarray) else
            sum(len(b) + 8 for b in v.values()) if isinstance(v, dict) else len(str(v))
            for v in payload.values()
        )  # fmt: skip

    adverts = {r: fed.clients[r].advertise_keys() for r in range(20)}
    assert all(size(a) <= max_reply_bytes("advertise", config) for a in adverts.values())
    lists = fed.server.collect_keys({100 + r: a for r, a in adverts.items()})
    shares = {n: fed.clients[n - 100].share_keys(m) for n, m in lists.items()}
    assert all(size(s) <= max_reply_bytes("share", config) for s in shares.values())
    inboxes = fed.server.collect_shares(shares)
    masked = {
        n: fed.clients[n - 100].masked_input(fed.inputs[n - 100], m) for n, m in inboxes.items()
    }
    assert all(size(m) <= max_reply_bytes("masked", config) for m in masked.values())
    assert (
        max_reply_bytes("masked", config) < 8 * config.vector_length + 2048
    )  # no room for 1e8 values
