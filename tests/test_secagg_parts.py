"""Building blocks of secure aggregation: Shamir, encoding, parameters, graph, roster, digest."""

import json
import math
import os
import stat

import numpy as np
import pytest
from fedseg.privacy.secagg import (
    FederationRoster,
    SecAggConfig,
    SecAggConfigError,
    SecAggParams,
    crypto,
    generate_signing_key,
    load_roster,
    load_signing_key,
    min_survivors,
    noise_share,
    request_digest,
    save_roster,
    shamir,
    signing,
    simulation_roster,
    simulation_signing_key,
)
from fedseg.privacy.secagg.encoding import decode_sum, encode
from fedseg.privacy.secagg.errors import SecAggAborted
from fedseg.privacy.secagg.graph import NeighbourGraph
from hypothesis import given, settings
from hypothesis import strategies as st

SPEC = (("sums", (2, 3)), ("counts", (2,)))


def derive(n, tolerance=0.3, collusion=0.0, max_abs=10.0):
    params = SecAggParams(dropout_tolerance=tolerance, collusion=collusion)
    return SecAggConfig.derive(
        num_clients=n, params=params, vector_spec=SPEC, max_abs_value=max_abs
    )


# --- Shamir ---------------------------------------------------------------------------


def test_lagrange_coefficients_at_zero_known_values():
    # f(0) = 3 f(1) - 3 f(2) + f(3) for any quadratic f
    assert shamir.lagrange_at_zero((1, 2, 3)).tolist() == [3, shamir.PRIME - 3, 1]


def test_linear_sharing_hand_computed():
    shares = shamir.share(np.array([5], dtype=np.int64), np.array([1, 2]), threshold=2)
    slope = (shares[1, 0] - shares[0, 0]) % shamir.PRIME
    assert (shares[0, 0] - slope) % shamir.PRIME == 5


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(2, 12), st.data())
def test_any_threshold_shares_rebuild_the_secret(secret, threshold, data):
    points = np.array(data.draw(st.lists(st.integers(1, 10_000), min_size=threshold,
                                         max_size=threshold + 5, unique=True)))  # fmt: skip
    shares = shamir.share(shamir.secret_to_chunks(secret), points, threshold)
    chosen = data.draw(st.permutations(range(points.size)))[:threshold]
    chunks = shamir.reconstruct(tuple(int(points[i]) for i in chosen), shares[chosen])
    assert shamir.chunks_to_secret(chunks) == secret


def test_fewer_than_threshold_shares_rebuild_something_else():
    secret = os.urandom(32)
    shares = shamir.share(shamir.secret_to_chunks(secret), np.arange(1, 6), threshold=5)
    assert shamir.chunks_to_secret(shamir.reconstruct((1, 2, 3, 4), shares[:4])) != secret


def test_share_bytes_round_trip_and_malformed():
    row = shamir.uniform_field_elements((shamir.CHUNKS,))
    assert np.array_equal(shamir.share_from_bytes(shamir.share_to_bytes(row)), row)
    assert shamir.share_from_bytes(b"short") is None
    assert shamir.share_from_bytes(b"\xff" * shamir.SHARE_BYTES) is None


# --- encoding -------------------------------------------------------------------------


def test_encoding_round_trip_including_negative_sums():
    config = derive(5)
    values = {"sums": np.array([[1.5, -2.25, 0.0], [9.0, -10.0, 3.0]]), "counts": np.array([2, 7])}
    words, clipped = encode(values, config)
    decoded = decode_sum(words + words, config, contributors=2)
    assert clipped == 0
    assert np.array_equal(decoded["sums"], 2 * values["sums"])
    assert np.array_equal(decoded["counts"], [4.0, 14.0])


def test_encoding_clips_and_counts_nan_inf_and_large_values():
    config = derive(5)  # max_abs 10
    values = {
        "sums": np.array([[11.0, -1e300, np.inf], [np.nan, 10.0, -10.0]]),
        "counts": np.zeros(2),
    }
    words, clipped = encode(values, config)
    assert clipped == 4
    assert decode_sum(words, config, 1)["sums"].tolist() == [
        [10.0, -10.0, 10.0],
        [0.0, 10.0, -10.0],
    ]


def test_decoding_refuses_a_sum_outside_what_the_contributors_can_produce():
    config = derive(5)
    words, _ = encode({"sums": np.full((2, 3), 10.0), "counts": np.full(2, -10.0)}, config)
    assert decode_sum(3 * words, config, contributors=3)["counts"].tolist() == [-30.0, -30.0]
    with pytest.raises(SecAggAborted, match="outside the range 2 merchants"):
        decode_sum(3 * words, config, contributors=2)
    with pytest.raises(SecAggAborted):
        decode_sum(words + np.uint64(2**61), config, contributors=5)


# --- parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "tolerance", "collusion", "k", "t", "m_min"),
    [
        (5, 0.3, 0.0, 4, 3, 4),  # complete graph: t = k - floor(0.3 * 5)
        (20, 0.3, 0.0, 14, 8, 14),
        (20, 0.3, 0.05, 16, 10, 14),
        (100, 0.3, 0.0, 28, 8, 70),
        (1000, 0.3, 0.0, 36, 8, 700),
        (1000, 0.1, 0.0, 20, 7, 900),
    ],
)
def test_derived_graph_known_values(n, tolerance, collusion, k, t, m_min):
    config = derive(n, tolerance, collusion)
    assert (config.neighbours, config.threshold, config.min_survivors) == (k, t, m_min)


def test_exact_decimal_counts():
    assert min_survivors(20, 0.3) == 14  # 20 * 0.7 is 14.000000000000002 in floats
    assert min_survivors(100, 0.29) == 71 and min_survivors(10, 0.1) == 9


def test_infeasible_parameters_are_refused_with_the_bound():
    with pytest.raises(SecAggConfigError, match=r"below \(1 - collusion\) / 2 = 0.4"):
        SecAggParams(dropout_tolerance=0.4, collusion=0.2)
    with pytest.raises(SecAggConfigError, match="roster of >= 3"):
        derive(2)


def test_ring_headroom_bounds_the_scale():
    config = derive(10_000, max_abs=1e8)
    assert config.num_clients * config.max_word < 2 ** (63 - 4)
    assert config.scale_bits >= 18


def test_noise_share_known_values():
    assert noise_share(20, 0.3, 0.0) == 1 / 14
    assert noise_share(20, 0.3, 0.1) == 1 / 12  # m_min = 14, floor(0.1 * 20) = 2 colluders
    assert noise_share(1000, 0.3, 0.0) == 1 / 700
    with pytest.raises(SecAggConfigError, match="no honest survivor"):
        noise_share(10, 0.5, 0.5)


def test_worst_accepted_survivor_set_still_carries_the_charged_sigma():
    """m_min survivors of which floor(γn) collude (and subtract their own noise): the
    honest shares alone have the target variance (2e5 draws; 3% is ~9 sd)."""
    n, tolerance, collusion, sigma = 50, 0.3, 0.1, 3.0
    honest = min_survivors(n, tolerance) - math.floor(collusion * n)
    per_merchant = sigma * math.sqrt(noise_share(n, tolerance, collusion))
    sums = np.random.default_rng(7).normal(0.0, per_merchant, size=(200_000, honest)).sum(axis=1)
    assert np.var(sums) == pytest.approx(sigma**2, rel=0.03)


# --- graph, crypto, signing -----------------------------------------------------------


def test_neighbour_graph_is_symmetric_regular_and_sides_cover_it():
    graph = NeighbourGraph(300, 10, os.urandom(32))
    for rank in range(300):
        peers = graph.neighbours_of(rank)
        assert len(peers) == 10 and rank not in peers
        assert all(
            graph.are_neighbours(rank, int(p)) and rank in graph.neighbours_of(int(p))
            for p in peers
        )
        assert sorted(np.concatenate(graph.sides(rank)).tolist()) == peers.tolist()
    assert np.array_equal(NeighbourGraph(300, 10, b"s").ring, NeighbourGraph(300, 10, b"s").ring)


def test_share_encryption_binds_associated_data():
    key = os.urandom(32)
    blob = crypto.encrypt(key, b"share", b"round 1 from 2 to 3")
    assert crypto.decrypt(key, blob, b"round 1 from 2 to 3") == b"share"
    assert crypto.decrypt(key, blob, b"round 1 from 3 to 2") is None
    assert crypto.decrypt(key, blob[:-1] + bytes([blob[-1] ^ 1]), b"round 1 from 2 to 3") is None


def test_statements_are_domain_separated():
    key = simulation_signing_key(0, "a")
    public = key.public_key().public_bytes_raw()
    ranks = np.array([1, 2, 3])
    survivors = signing.survivors_message(b"s" * 32, ranks)
    partners = signing.partners_message(b"s" * 32, 0, bytes(32), ranks)
    signature = signing.sign(key, survivors)
    assert signing.verify(public, signature, survivors)
    assert not signing.verify(public, signature, partners)
    assert not signing.verify(public, signature, signing.survivors_message(b"t" * 32, ranks))
    assert not signing.verify(public, signature[:-1], survivors)


# --- request digest -------------------------------------------------------------------


def test_request_digest_is_canonical_and_injective():
    base = {"centres": np.arange(6.0).reshape(3, 2), "z": 1.5, "release": "cluster_stats", "k": 3}
    assert request_digest(base) == request_digest(dict(reversed(list(base.items()))))
    assert request_digest(base) == request_digest({**base, "z": np.float64(1.5), "k": np.int64(3)})
    variants = [
        {**base, "k": 3.0},
        {**base, "k": True},
        {**base, "centres": base["centres"].astype(np.float32)},
        {**base, "centres": base["centres"].reshape(2, 3)},
        {**base, "centres": base["centres"] + 1e-12},
        {**base, "extra": None},
        {**base, "release": b"cluster_stats"},
        {**base, "nested": {"a": [1, 2]}},
    ]
    digests = {request_digest(v) for v in variants}
    assert len(digests) == len(variants) and request_digest(base) not in digests
    with pytest.raises(TypeError, match="dtype object"):
        request_digest({"x": np.array([object()])})


# --- roster ---------------------------------------------------------------------------


def test_roster_file_round_trip_and_digest(tmp_path):
    roster = simulation_roster(3, ["b", "a", "c"])
    assert roster.names == ("a", "b", "c") and len(roster) == 3 and roster.rank("b") == 1
    save_roster(tmp_path / "roster.json", roster)
    again = load_roster(tmp_path / "roster.json")
    assert again.digest == roster.digest and again.public_keys == roster.public_keys
    other = FederationRoster.from_keys(
        {**dict(zip(roster.names, roster.public_keys, strict=True)), "c": bytes(32)}
    )
    assert other.digest != roster.digest


@pytest.mark.parametrize(
    ("merchants", "needle"),
    [({"a": "zz"}, "merchant 'a' is not hex"), ({"a": "00" * 31}, "32-byte"),
     ({"a": "11" * 32, "b": "11" * 32}, "share one signing key")],
)  # fmt: skip
def test_malformed_roster_files_are_refused(tmp_path, merchants, needle):
    path = tmp_path / "roster.json"
    path.write_text(json.dumps({"format": "fedseg-secagg-roster/1", "merchants": merchants}))
    with pytest.raises(SecAggConfigError, match=needle):
        load_roster(path)


def test_keygen_writes_a_private_file_whose_key_matches_the_roster(tmp_path):
    path = tmp_path / "merchant.key"
    public = generate_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_signing_key(path).public_key().public_bytes_raw() == public
    with pytest.raises(FileExistsError):
        generate_signing_key(path)  # never overwrites a merchant's key


def test_simulation_keys_are_deterministic_per_seed_and_name():
    a = simulation_signing_key(1, "shop").private_bytes_raw()
    assert a == simulation_signing_key(1, "shop").private_bytes_raw()
    assert a != simulation_signing_key(2, "shop").private_bytes_raw()
    assert a != simulation_signing_key(1, "shop2").private_bytes_raw()
