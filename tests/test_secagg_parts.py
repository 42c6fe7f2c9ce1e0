"""Building blocks of secure aggregation: Shamir, encoding, config choice, noise arithmetic."""

import math
import os

import numpy as np
import pytest
from fedseg.privacy.secagg import (
    EncodingRangeError,
    SecAggConfig,
    SecAggConfigError,
    crypto,
    distributed_noise_sigma,
    shamir,
    surviving_noise_sigma,
)
from fedseg.privacy.secagg.encoding import decode_sum, encode
from fedseg.privacy.secagg.graph import NeighbourGraph
from hypothesis import given, settings
from hypothesis import strategies as st

SPEC = (("sums", (2, 3)), ("counts", (2,)))


def test_lagrange_coefficients_at_zero_known_values():
    # f(0) = 3 f(1) - 3 f(2) + f(3) for any quadratic f
    assert shamir.lagrange_at_zero((1, 2, 3)).tolist() == [3, shamir.PRIME - 3, 1]


def test_linear_sharing_hand_computed():
    secret = np.array([5], dtype=np.int64)
    shares = shamir.share(secret, np.array([1, 2]), threshold=2)
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
    points = np.arange(1, 6)
    shares = shamir.share(shamir.secret_to_chunks(secret), points, threshold=5)
    chunks = shamir.reconstruct((1, 2, 3, 4), shares[:4])
    assert shamir.chunks_to_secret(chunks) != secret


def test_share_bytes_round_trip_and_malformed():
    row = shamir.uniform_field_elements((shamir.CHUNKS,))
    assert np.array_equal(shamir.share_from_bytes(shamir.share_to_bytes(row)), row)
    assert shamir.share_from_bytes(b"short") is None
    assert shamir.share_from_bytes(b"\xff" * shamir.SHARE_BYTES) is None


def test_encoding_round_trip_including_negative_sums():
    config = SecAggConfig(3, 2, 2, 16, 10.0, SPEC)
    values = {"sums": np.array([[1.5, -2.25, 0.0], [9.0, -10.0, 3.0]]), "counts": np.array([2, 7])}
    total = encode(values, config) + encode(values, config)
    decoded = decode_sum(total, config)
    assert np.array_equal(decoded["sums"], 2 * values["sums"])
    assert np.array_equal(decoded["counts"], [4.0, 14.0])


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"sums": np.full((2, 3), 11.0), "counts": np.zeros(2)}, "'sums'"),
        ({"sums": np.zeros((2, 3)), "counts": np.array([0.0, np.nan])}, "'counts'"),
        ({"sums": np.zeros((3, 2)), "counts": np.zeros(2)}, "shape"),
        ({"sums": np.zeros((2, 3))}, "fields"),
    ],
)
def test_encoding_rejects_bad_values_naming_the_field(values, needle):
    config = SecAggConfig(3, 2, 2, 16, 10.0, SPEC)
    with pytest.raises(EncodingRangeError, match=needle):
        encode(values, config)


def test_config_rejects_overflowing_modulus_and_low_threshold():
    with pytest.raises(SecAggConfigError, match="overflows"):
        SecAggConfig(1000, 10, 6, 40, 1e6, SPEC)
    with pytest.raises(SecAggConfigError, match="threshold"):
        SecAggConfig(20, 10, 5, 16, 1.0, SPEC)


def test_choose_small_federation_survives_the_tolerated_dropouts():
    config = SecAggConfig.choose(num_clients=20, vector_spec=SPEC, max_abs_value=1.0)
    dropped = math.floor(0.3 * 20)
    assert 2 * config.threshold > config.neighbours
    assert config.neighbours - dropped >= config.threshold  # even if all drops are neighbours


def test_choose_large_federation_uses_a_sparse_graph():
    config = SecAggConfig.choose(
        num_clients=10_000, vector_spec=SPEC, max_abs_value=1.0, dropout_rate=0.1
    )
    assert config.neighbours < 100 and 2 * config.threshold > config.neighbours


def test_choose_rejects_infeasible_dropout_rate():
    with pytest.raises(SecAggConfigError, match="infeasible"):
        SecAggConfig.choose(num_clients=50, vector_spec=SPEC, max_abs_value=1.0, dropout_rate=0.5)


def test_neighbour_graph_is_symmetric_and_regular():
    graph = NeighbourGraph(list(range(0, 300, 3)), 10, os.urandom(32))
    for node in graph.node_ids:
        peers = graph.neighbours_of(node)
        assert len(peers) == 10 and node not in peers
        assert all(node in graph.neighbours_of(peer) for peer in peers)


def test_share_encryption_binds_associated_data():
    key = os.urandom(32)
    blob = crypto.encrypt(key, b"share", b"round 1 from 2 to 3")
    assert crypto.decrypt(key, blob, b"round 1 from 2 to 3") == b"share"
    assert crypto.decrypt(key, blob, b"round 1 from 3 to 2") is None
    assert crypto.decrypt(key, blob[:-1] + bytes([blob[-1] ^ 1]), b"round 1 from 2 to 3") is None


def test_distributed_noise_known_values():
    assert distributed_noise_sigma(sigma_total=2.0, n_expected_clients=4) == 1.0
    assert surviving_noise_sigma(sigma_total=2.0, n_expected_clients=4, n_contributors=4) == 2.0
    assert surviving_noise_sigma(
        sigma_total=2.0, n_expected_clients=4, n_contributors=1
    ) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_expected_clients"):
        distributed_noise_sigma(sigma_total=1.0, n_expected_clients=0)


def test_sum_of_noise_shares_has_the_achieved_sigma():
    rng = np.random.default_rng(7)
    per_client = distributed_noise_sigma(sigma_total=3.0, n_expected_clients=10)
    sums = rng.normal(0.0, per_client, size=(200_000, 7)).sum(axis=1)  # 7 of 10 survived
    achieved = surviving_noise_sigma(sigma_total=3.0, n_expected_clients=10, n_contributors=7)
    # relative sd of a sample variance on 2e5 draws is 0.3%; 3% is ~9 sd (false alarm << 1e-6)
    assert np.var(sums) == pytest.approx(achieved**2, rel=0.03)
