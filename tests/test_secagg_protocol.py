"""Secure-aggregation rounds end to end: correct sums under dropouts, aborts, bad messages."""

import numpy as np
import pytest
from fedseg.privacy.secagg import (
    EncodingRangeError,
    SecAggAborted,
    SecAggClient,
    SecAggConfig,
    SecAggProtocolError,
    SecAggServer,
    run_secagg_round,
)

SPEC = (("sums", (4, 10)), ("counts", (4,)))
NODES = [1000 + 7 * i for i in range(20)]


@pytest.fixture(scope="module")
def config():
    return SecAggConfig.choose(num_clients=20, vector_spec=SPEC, max_abs_value=1e4)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    return {
        node: {"sums": rng.normal(0, 500, (4, 10)), "counts": rng.integers(0, 900, 4) * 1.0}
        for node in NODES
    }


def plain_sum(inputs, nodes):
    return {name: sum(inputs[n][name] for n in nodes) for name in ("sums", "counts")}


def assert_close(released, expected, config, contributors):
    tolerance = contributors * config.quantization_step / 2
    for name in expected:
        assert np.abs(released[name] - expected[name]).max() <= tolerance


def test_no_dropout_releases_the_plain_sum(config, inputs):
    assert_close(run_secagg_round(inputs, config), plain_sum(inputs, NODES), config, 20)


def test_30_percent_drop_after_masked_input_still_counted(config, inputs):
    late = set(NODES[::3][:6])
    released = run_secagg_round(inputs, config, drop_after_masked=late)
    assert_close(released, plain_sum(inputs, NODES), config, 20)


def test_30_percent_drop_before_masked_input_are_left_out(config, inputs):
    gone = set(NODES[1::3][:6])
    released = run_secagg_round(inputs, config, drop_before_masked=gone)
    assert_close(released, plain_sum(inputs, [n for n in NODES if n not in gone]), config, 14)


def test_drop_before_sharing_and_after_masking_together(config, inputs):
    silent, late = {NODES[0], NODES[5]}, {NODES[1], NODES[9], NODES[13]}
    released = run_secagg_round(inputs, config, drop_before_shares=silent, drop_after_masked=late)
    assert_close(released, plain_sum(inputs, [n for n in NODES if n not in silent]), config, 18)


def test_sum_is_the_same_in_two_rounds_with_fresh_keys(config, inputs):
    first = run_secagg_round(inputs, config, round_id=1)
    second = run_secagg_round(inputs, config, round_id=2)
    assert all(np.array_equal(first[name], second[name]) for name in first)


def test_sparse_graph_round_with_dropouts():
    config = SecAggConfig.choose(
        num_clients=80, vector_spec=SPEC, max_abs_value=100.0, dropout_rate=0.1
    )
    assert config.neighbours < 79
    rng = np.random.default_rng(5)
    inputs = {n: {"sums": rng.uniform(-99, 99, (4, 10)), "counts": np.ones(4)} for n in range(80)}
    released = run_secagg_round(
        inputs, config, drop_before_masked={3, 40, 41}, drop_after_masked={7, 50, 77, 78}
    )
    assert_close(released, plain_sum(inputs, [n for n in range(80) if n not in {3, 40, 41}]),
                 config, 77)  # fmt: skip


def test_too_few_masked_inputs_abort(config, inputs):
    gone = set(NODES[: 20 - config.threshold + 1])
    with pytest.raises(SecAggAborted, match="masked inputs"):
        run_secagg_round(inputs, config, drop_before_masked=gone)


def test_too_few_unmask_answers_abort_and_release_nothing(config, inputs):
    server, clients, lists = _masked_round(config, inputs)
    answering = NODES[: config.threshold - 1]
    with pytest.raises(SecAggAborted, match="shares of client"):
        server.collect_unmask({n: clients[n].unmask(lists[n]) for n in answering})
    assert server.contributors_ == []
    with pytest.raises(SecAggAborted):
        server.collect_unmask({n: clients[n].unmask(lists[n]) for n in NODES[-3:]})


def test_malformed_and_stale_messages_count_as_dropouts(config, inputs):
    clients = {n: SecAggClient(n, config, round_id=4) for n in NODES}
    server = SecAggServer(config, round_id=4)
    adverts = {n: c.advertise_keys() for n, c in clients.items()}
    adverts[NODES[0]] = {**adverts[NODES[0]], "mask_pk": b"short"}
    adverts[NODES[1]] = {**adverts[NODES[1]], "round": 3}
    adverts[NODES[2]] = "garbage"
    roster = server.collect_keys(adverts)
    assert roster["node_ids"].tolist() == NODES[3:]
    alive = NODES[3:]
    shares = {n: clients[n].share_keys(roster) for n in alive}
    inboxes = server.collect_shares(shares)
    masked = {n: clients[n].masked_input(inputs[n], inboxes[n]) for n in alive}
    masked[alive[0]] = {**masked[alive[0]], "masked": masked[alive[0]]["masked"].astype(float)}
    masked[alive[1]] = {**masked[alive[1]], "masked": masked[alive[1]]["masked"][:-1]}
    lists = server.collect_masked(masked)
    contributors = alive[2:]
    replies = {n: clients[n].unmask(lists[n]) for n in contributors}
    replies[contributors[0]] = {"round": 4, "self_mask_shares": "nope", "key_shares": {}}
    released = server.collect_unmask(replies)
    assert server.contributors_ == sorted(contributors)
    assert_close(released, plain_sum(inputs, contributors), config, len(contributors))


def test_tampered_share_ciphertext_is_ignored(config, inputs):
    clients = {n: SecAggClient(n, config, round_id=9) for n in NODES}
    server = SecAggServer(config, round_id=9)
    roster = server.collect_keys({n: c.advertise_keys() for n, c in clients.items()})
    inboxes = server.collect_shares({n: c.share_keys(roster) for n, c in clients.items()})
    victim = NODES[4]
    sender = next(iter(inboxes[victim]["inbox"]))
    blob = inboxes[victim]["inbox"][sender]
    inboxes[victim]["inbox"][sender] = blob[:20] + bytes([blob[20] ^ 0xFF]) + blob[21:]
    lists = server.collect_masked({n: c.masked_input(inputs[n], inboxes[n])
                                   for n, c in clients.items()})  # fmt: skip
    replies = {n: c.unmask(lists[n]) for n, c in clients.items()}
    assert sender not in replies[victim]["self_mask_shares"]
    assert_close(server.collect_unmask(replies), plain_sum(inputs, NODES), config, 20)


def test_forged_share_is_detected_and_skipped(config, inputs):
    server, clients, lists = _masked_round(config, inputs)
    replies = {n: c.unmask(lists[n]) for n, c in clients.items()}
    forger = min(replies)
    owner = next(iter(replies[forger]["self_mask_shares"]))
    replies[forger]["self_mask_shares"][owner] = bytes(36)
    assert_close(server.collect_unmask(replies), plain_sum(inputs, NODES), config, 20)


def test_client_refuses_out_of_order_and_inconsistent_broadcasts(config, inputs):
    server, clients, lists = _masked_round(config, inputs)
    node = NODES[0]
    overlapping = {**lists[node], "dropped": np.array([NODES[1]], dtype=np.uint64)}
    with pytest.raises(SecAggProtocolError, match="survivor"):
        clients[node].unmask(overlapping)
    with pytest.raises(SecAggProtocolError, match="unmask called during done"):
        clients[node].unmask(lists[node])
    fresh = SecAggClient(node, config, round_id=0)
    with pytest.raises(SecAggProtocolError, match="share called"):
        fresh.share_keys({"round": 0, "node_ids": np.array([], dtype=np.uint64)})


def test_client_refuses_a_roster_without_its_own_keys(config):
    clients = [SecAggClient(n, config, round_id=0) for n in NODES]
    adverts = {c.node_id: c.advertise_keys() for c in clients}
    roster = SecAggServer(config, round_id=0).collect_keys(adverts)
    roster["public_keys"] = roster["public_keys"].copy()
    roster["public_keys"][0, :] = roster["public_keys"][1, ::-1]
    with pytest.raises(SecAggProtocolError, match="own keys"):
        clients[0].share_keys(roster)


def test_out_of_range_input_names_the_field(config, inputs):
    server, clients, inboxes = _shared_round(config)
    bad = {**inputs[NODES[0]], "counts": np.array([0.0, 2e4, 0.0, 0.0])}
    with pytest.raises(EncodingRangeError, match="'counts'.*20000"):
        clients[NODES[0]].masked_input(bad, inboxes[NODES[0]])


def _shared_round(config):
    clients = {n: SecAggClient(n, config, round_id=0) for n in NODES}
    server = SecAggServer(config, round_id=0)
    roster = server.collect_keys({n: c.advertise_keys() for n, c in clients.items()})
    return (
        server,
        clients,
        server.collect_shares({n: c.share_keys(roster) for n, c in clients.items()}),
    )


def _masked_round(config, inputs):
    server, clients, inboxes = _shared_round(config)
    masked = {n: c.masked_input(inputs[n], inboxes[n]) for n, c in clients.items()}
    return server, clients, server.collect_masked(masked)
