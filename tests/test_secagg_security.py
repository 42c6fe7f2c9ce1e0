"""What the server sees under secure aggregation is uniform noise except for the sum.

Statistical tests use chi-square at alpha = 1e-6 (false-alarm rate 1e-6 per test).
"""

import numpy as np
from fedseg.privacy.secagg import (
    SecAggParams,
    SecAggServer,
    SecAggSession,
    crypto,
    request_digest,
    shamir,
    simulation_roster,
    simulation_signing_key,
)
from fedseg.privacy.secagg.client import SecAggClient
from fedseg.privacy.secagg.encoding import encode
from fedseg.privacy.secagg.masking import self_mask
from scipy.stats import chi2

ALPHA = 1e-6
WORDS = 4096
SPEC = (("values", (WORDS,)),)
NAMES = [f"m{i:02d}" for i in range(20)]
# a fixed, highly structured input: if masks leaked it, the bytes would not be uniform
CONSTANT = {"values": np.full(WORDS, 123.25)}


def assert_bytes_uniform(words: np.ndarray) -> None:
    for shift in (0, 56):  # low byte and top byte of each uint64 word
        observed = np.bincount(((words >> np.uint64(shift)) & np.uint64(255)).astype(np.int64),
                               minlength=256)  # fmt: skip
        expected = words.size / 256
        statistic = ((observed - expected) ** 2 / expected).sum()
        assert statistic < chi2.isf(ALPHA, df=255), f"byte at shift {shift} not uniform"


def start_round(round_id=0):
    session = SecAggSession.create(
        roster=simulation_roster(0, NAMES), params=SecAggParams(), round_id=round_id,
        request_digest=request_digest({}), vector_spec=SPEC, max_abs_value=1e3,
    )  # fmt: skip
    clients = {
        r: SecAggClient(
            session,
            merchant=m,
            node_id=r,
            signing_key=simulation_signing_key(0, m),
            used_sessions=set(),
        )  # fmt: skip
        for r, m in enumerate(NAMES)
    }
    server = SecAggServer(session)
    lists = server.collect_keys({r: c.advertise_keys() for r, c in clients.items()})
    inboxes = server.collect_shares({r: clients[r].share_keys(m) for r, m in lists.items()})
    masked = {r: clients[r].masked_input(CONSTANT, m) for r, m in inboxes.items()}
    return session, clients, server, masked


def test_masked_uploads_are_uniform_bytes():
    session, _, _, masked = start_round()
    words = np.concatenate([payload["masked"] for payload in masked.values()])
    assert_bytes_uniform(words)
    encoded, _ = encode(CONSTANT, session.config)
    assert not np.any(words == encoded[0])  # no word left unmasked (2^-64 each)


def test_a_late_merchants_input_stays_hidden_from_everything_the_server_holds():
    session, clients, server, masked = start_round(round_id=5)
    late = 7
    survivors = server.collect_masked({r: m for r, m in masked.items() if r != late})
    signatures = {r: clients[r].sign_survivors(m) for r, m in survivors.items()}
    certificates = server.collect_signatures(signatures)
    replies = {r: clients[r].unmask(m) for r, m in certificates.items()}
    # The server also holds the late upload and legally learns late's mask key ...
    assert not any(late in reply["self_mask_shares"] for reply in replies.values())
    shares = [(r + 1, shamir.share_from_bytes(p["key_shares"][late]))
              for r, p in sorted(replies.items()) if late in p["key_shares"]]  # fmt: skip
    t = session.config.threshold
    assert len(shares) >= t
    secret = shamir.chunks_to_secret(
        shamir.reconstruct(tuple(p for p, _ in shares[:t]), np.stack([s for _, s in shares[:t]]))
    )
    residual = masked[late]["masked"].copy()
    for peer in clients[late]._partners.tolist():
        info = crypto.pair_info(b"mask", min(late, peer), max(late, peer))
        public = clients[peer]._keys[:32]
        mask = crypto.expand_mask(
            crypto.agree_from_private(secret, public, session.session_id, info), WORDS
        )
        residual = residual - mask if late < peer else residual + mask
    # ... so everything it could remove is removed; what is left is still uniform ...
    assert_bytes_uniform(residual)
    encoded, _ = encode(CONSTANT, session.config)
    assert not np.any(residual == encoded)
    # ... and only the self mask, whose seed no honest merchant revealed, separates it
    # from the input (checked with the merchant's private seed, which the server never sees).
    assert np.array_equal(residual - self_mask(clients[late]._self_seed, WORDS), encoded)
