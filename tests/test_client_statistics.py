"""Merchant-side statistics and node caching: fast paths give the same bits as the slow ones."""

from __future__ import annotations

import numpy as np
import pytest
from fedseg.client import app as client_app
from fedseg.client.statistics import nearest_centre
from flwr.app import Context, RecordDict
from threadpoolctl import threadpool_limits


def _reference_labels(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = z @ (-2.0 * centres.T) + np.einsum("ij,ij->i", centres, centres)
    return np.argmin(distances, axis=1)


@pytest.mark.parametrize("rows, k", [(3, 2), (100, 5), (5_000, 40)])  # below and above the limit
def test_nearest_centre_matches_the_formula(rows, k):
    rng = np.random.default_rng([rows, k])
    z, centres = rng.normal(size=(rows, 8)), rng.normal(size=(k, 8))
    np.testing.assert_array_equal(nearest_centre(z, centres), _reference_labels(z, centres))


@pytest.mark.parametrize("rows, k", [(100, 5), (2_000, 160)])
def test_distance_products_are_the_same_bits_on_one_or_two_blas_threads(rows, k):
    """Why skipping the one-thread limit for small products cannot change a label."""
    rng = np.random.default_rng(7)
    z, centres = rng.normal(size=(rows, 8)), rng.normal(size=(k, 8))
    with threadpool_limits(limits=1, user_api="blas"):
        one = z @ (-2.0 * centres.T)
    with threadpool_limits(limits=2, user_api="blas"):
        two = z @ (-2.0 * centres.T)
    assert one.tobytes() == two.tobytes()


def _context(data_dir, partition: int, run: str) -> Context:
    return Context(
        run_id=1,
        node_id=partition + 2,
        node_config={"partition-id": partition},
        state=RecordDict(),
        run_config={"sim-data-dir": str(data_dir), "sim-run-id": run, "seed": 0},
    )


def test_nodes_are_kept_within_a_run_and_dropped_by_the_next(mixture_federation):
    first = client_app._node(_context(mixture_federation, 0, "run-a"))
    other = client_app._node(_context(mixture_federation, 1, "run-a"))
    assert client_app._node(_context(mixture_federation, 0, "run-a")) is first
    assert client_app._node(_context(mixture_federation, 1, "run-a")) is other
    fresh = client_app._node(_context(mixture_federation, 0, "run-b"))
    assert fresh is not first
    runs = {run for _, run in client_app._nodes}
    assert "run-a" not in runs and "run-b" in runs
    # going back to an old run id builds anew and drops run-b's merchants
    again = client_app._node(_context(mixture_federation, 0, "run-a"))
    assert again is not first
    assert {run for _, run in client_app._nodes} == {"run-a"}
