"""Issue #14 / #15 attacks reproduced against the v1 protocol (no roster, no consistency round).

Each test asserts that the attack SUCCEEDS: this file records the figures of the review
before the defences replace the protocol (see the next commit, which turns every one of
these into a test that the attack fails).
"""

import numpy as np
import pytest
from fedseg.privacy.secagg import (
    SecAggClient,
    SecAggConfig,
    SecAggProtocolError,
    SecAggServer,
    crypto,
    shamir,
)
from fedseg.privacy.secagg.encoding import decode_sum
from fedseg.privacy.secagg.masking import self_mask

SPEC = (("sums", (4, 10)), ("counts", (4,)))


def masked_round(n, dropout, complete=False):
    cfg = SecAggConfig.choose(
        num_clients=n, vector_spec=SPEC, max_abs_value=1e4, dropout_rate=dropout
    )
    if complete:  # v1 clients accept any config the server sends
        cfg = SecAggConfig(n, n - 1, n // 2, cfg.scale_bits, 1e4, SPEC)
    nodes = [1000 + 7 * i for i in range(n)]
    rng = np.random.default_rng(3)
    inputs = {v: {"sums": rng.normal(0, 500, (4, 10)), "counts": rng.integers(0, 900, 4) * 1.0}
              for v in nodes}  # fmt: skip
    clients = {v: SecAggClient(v, cfg, round_id=1) for v in nodes}
    server = SecAggServer(cfg, round_id=1)
    roster = server.collect_keys({v: c.advertise_keys() for v, c in clients.items()})
    inboxes = server.collect_shares({v: c.share_keys(roster) for v, c in clients.items()})
    masked = {v: c.masked_input(inputs[v], inboxes[v])["masked"] for v, c in clients.items()}
    return cfg, nodes, inputs, clients, server, roster, masked


def rebuild(shares, t):
    pts, ys = tuple(p for p, _ in shares[:t]), np.stack([s for _, s in shares[:t]])
    return shamir.chunks_to_secret(shamir.reconstruct(pts, ys))


@pytest.mark.parametrize(("n", "dropout"), [(5, 0.1), (5, 0.3), (20, 0.1), (20, 0.3)])
def test_isolation_attack_recovers_one_merchants_input(n, dropout):
    cfg, nodes, inputs, clients, server, roster, masked = masked_round(n, dropout)
    target, fakes = nodes[0], [10**12 + i for i in range(cfg.threshold)]
    replies = {}
    for v in nodes:
        told = sorted({v, target} | set(fakes))
        lists = {"round": 1, "survivors": np.array(told, np.uint64),
                 "dropped": np.array(sorted(set(nodes) - set(told)), np.uint64)}  # fmt: skip
        replies[v] = clients[v].unmask(lists)
    graph, ctx = server._graph, crypto.round_context(1)
    seed = rebuild([(graph.share_point(v), shamir.share_from_bytes(r["self_mask_shares"][target]))
                    for v, r in replies.items() if target in r["self_mask_shares"]], cfg.threshold)  # fmt: skip
    rows = roster["public_keys"]
    public = {int(i): rows[j, :32].tobytes() for j, i in enumerate(roster["node_ids"])}
    words = masked[target] - self_mask(seed, cfg.vector_length)
    for w in graph.neighbours_of(target):
        key = rebuild([(graph.share_point(v), shamir.share_from_bytes(r["key_shares"][w]))
                       for v, r in replies.items() if w in r["key_shares"]], cfg.threshold)  # fmt: skip
        info = crypto.pair_info(b"mask", min(target, w), max(target, w))
        mask = crypto.expand_mask(
            crypto.agree_from_private(key, public[target], ctx, info), cfg.vector_length
        )
        words = words - mask if target < w else words + mask
    recovered = decode_sum(words, cfg)
    assert np.abs(recovered["sums"] - inputs[target]["sums"]).max() <= cfg.quantization_step


def test_fewer_than_m_min_survivors_are_unmasked():
    cfg, nodes, inputs, clients, server, _, masked = masked_round(20, 0.3, complete=True)
    keep = nodes[: cfg.threshold + 1]  # 11 of 20; m_min at tolerance 0.3 would be 14
    lists = server.collect_masked(
        {v: {"round": 1, "node_id": v, "masked": masked[v]} for v in keep}
    )
    released = server.collect_unmask({v: clients[v].unmask(lists[v]) for v in keep})
    assert np.allclose(released["counts"], sum(inputs[v]["counts"] for v in keep))


def test_survivor_ids_outside_the_roster_are_accepted():
    cfg, nodes, _, clients, *_ = masked_round(20, 0.3)
    padded = np.array(sorted(set(nodes) | {10**12, 10**12 + 1}), np.uint64)
    for v in nodes:
        clients[v].unmask({"round": 1, "survivors": padded, "dropped": np.array([], np.uint64)})


def test_ring_wrap_by_one_merchant_is_released():
    cfg, nodes, inputs, clients, server, _, masked = masked_round(20, 0.3)
    replies = {v: {"round": 1, "node_id": v, "masked": masked[v]} for v in nodes}
    replies[nodes[3]]["masked"] = masked[nodes[3]] + np.uint64(2**61)
    lists = server.collect_masked(replies)
    released = server.collect_unmask({v: clients[v].unmask(lists[v]) for v in nodes})
    assert released["counts"][0] > 100 * sum(inputs[v]["counts"][0] for v in nodes)


def test_out_of_range_error_carries_the_merchants_value():
    cfg, nodes, inputs, clients, server, roster, _ = masked_round(5, 0.3)
    fresh = {v: SecAggClient(v, cfg, round_id=2) for v in nodes}
    server = SecAggServer(cfg, round_id=2)
    roster = server.collect_keys({v: c.advertise_keys() for v, c in fresh.items()})
    inboxes = server.collect_shares({v: c.share_keys(roster) for v, c in fresh.items()})
    secret = {**inputs[nodes[0]], "counts": np.array([0.0, 12345.678, 0.0, 0.0])}
    with pytest.raises(ValueError, match="12345.678"):
        fresh[nodes[0]].masked_input(secret, inboxes[nodes[0]])


def test_a_second_unmask_request_is_refused_by_the_stage_machine():
    cfg, nodes, _, clients, *_ = masked_round(20, 0.3)
    lists = {
        "round": 1,
        "survivors": np.array(nodes, np.uint64),
        "dropped": np.array([], np.uint64),
    }
    clients[nodes[1]].unmask(lists)
    with pytest.raises(SecAggProtocolError, match="during done"):
        clients[nodes[1]].unmask(lists)
