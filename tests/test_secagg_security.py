"""What the server sees under secure aggregation is uniform noise except for the sum.

Statistical tests use chi-square at alpha = 1e-6 (false-alarm rate 1e-6 per test).
"""

import numpy as np
import pytest
from fedseg.privacy.secagg import SecAggClient, SecAggConfig, SecAggServer, crypto, shamir
from fedseg.privacy.secagg.encoding import encode
from fedseg.privacy.secagg.masking import self_mask
from scipy.stats import chi2

ALPHA = 1e-6
WORDS = 4096
SPEC = (("values", (WORDS,)),)
NODES = list(range(1, 21))
# a fixed, highly structured input: if masks leaked it, the bytes would not be uniform
CONSTANT = {"values": np.full(WORDS, 123.25)}


@pytest.fixture(scope="module")
def config():
    return SecAggConfig.choose(num_clients=20, vector_spec=SPEC, max_abs_value=1e3)


def assert_bytes_uniform(words: np.ndarray) -> None:
    for shift in (0, 56):  # low byte and top byte of each uint64 word
        observed = np.bincount(((words >> np.uint64(shift)) & np.uint64(255)).astype(np.int64),
                               minlength=256)  # fmt: skip
        expected = words.size / 256
        statistic = ((observed - expected) ** 2 / expected).sum()
        assert statistic < chi2.isf(ALPHA, df=255), f"byte at shift {shift} not uniform"


def start_round(config, round_id=0):
    clients = {n: SecAggClient(n, config, round_id=round_id) for n in NODES}
    server = SecAggServer(config, round_id=round_id)
    roster = server.collect_keys({n: c.advertise_keys() for n, c in clients.items()})
    inboxes = server.collect_shares({n: c.share_keys(roster) for n, c in clients.items()})
    masked = {n: c.masked_input(CONSTANT, inboxes[n]) for n, c in clients.items()}
    return clients, server, roster, masked


def test_masked_uploads_are_uniform_bytes(config):
    _, _, _, masked = start_round(config)
    words = np.concatenate([payload["masked"] for payload in masked.values()])
    assert_bytes_uniform(words)
    assert not np.any(words == encode(CONSTANT, config)[0])  # no word left unmasked (2^-64 each)


def test_a_late_clients_input_stays_hidden_from_everything_the_server_holds(config):
    clients, server, roster, masked = start_round(config, round_id=5)
    late = NODES[7]
    lists = server.collect_masked({n: m for n, m in masked.items() if n != late})
    replies = {n: clients[n].unmask(lists[n]) for n in lists}
    # The server also holds the late upload y_late and legally learns late's mask key.
    assert not any(late in reply["self_mask_shares"] for reply in replies.values())
    key_shares = [(server._graph.share_point(n), shamir.share_from_bytes(r["key_shares"][late]))
                  for n, r in sorted(replies.items()) if late in r["key_shares"]]  # fmt: skip
    assert len(key_shares) >= config.threshold
    subset = key_shares[: config.threshold]
    secret = shamir.chunks_to_secret(
        shamir.reconstruct(tuple(p for p, _ in subset), np.stack([s for _, s in subset]))
    )
    rows = roster["public_keys"]
    public = {n: rows[i, :32].tobytes() for i, n in enumerate(roster["node_ids"].tolist())}
    assert crypto.public_from_private(secret) == public[late]
    residual = masked[late]["masked"].copy()
    context = crypto.round_context(5)
    for peer in clients[late]._partners:
        info = crypto.pair_info(b"mask", min(late, peer), max(late, peer))
        mask = crypto.expand_mask(crypto.agree_from_private(secret, public[peer], context, info),
                                  WORDS)  # fmt: skip
        residual = residual - mask if late < peer else residual + mask
    # Everything the server could remove is removed; what is left is still uniform ...
    assert_bytes_uniform(residual)
    assert not np.any(residual == encode(CONSTANT, config))
    # ... and only the self mask, whose seed shares no honest client revealed, separates it
    # from the input (checked with the client's private seed, which the server never sees).
    hidden = residual - self_mask(clients[late]._self_seed, WORDS)
    assert np.array_equal(hidden, encode(CONSTANT, config))


def test_a_server_splitting_the_survivor_list_never_gets_both_secrets(config):
    clients, server, _, masked = start_round(config, round_id=6)
    lists = server.collect_masked(masked)
    target = NODES[0]
    holders = [n for n in NODES if target in clients[n]._held]
    self_mask_shares = key_shares = 0
    for index, node in enumerate(holders):
        survivors = np.array([n for n in NODES if n != target or index % 2 == 0], np.uint64)
        dropped = np.array([] if index % 2 == 0 else [target], np.uint64)
        reply = clients[node].unmask({**lists[node], "survivors": survivors, "dropped": dropped})
        self_mask_shares += target in reply["self_mask_shares"]
        key_shares += target in reply["key_shares"]
    assert self_mask_shares + key_shares == len(holders)
    assert min(self_mask_shares, key_shares) < config.threshold  # because 2t > neighbours
