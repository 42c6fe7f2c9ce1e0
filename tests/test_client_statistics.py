"""Merchant-side statistics and node caching: fast paths give the same bits as the slow ones."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import accepted_plan, bare_node
from fedseg.client import app as client_app
from fedseg.privacy.protocol.builtin import numeric_table_schema
from fedseg.privacy.published.segments import nearest_centre
from flwr.app import Context, RecordDict
from threadpoolctl import threadpool_limits


def _reference_labels(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = z @ (-2.0 * centres.T) + np.einsum("ij,ij->i", centres, centres)
    return np.argmin(distances, axis=1)


@pytest.mark.parametrize("rows, k", [(3, 2), (100, 5), (5_000, 40), (5_000, 320)])  # 1 to 5 blocks
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
    schema = numeric_table_schema([f"f{j}" for j in range(4)]).to_toml()

    def node(partition: int, run: str):
        return client_app._node(_context(mixture_federation, partition, run), schema)

    first, other = node(0, "run-a"), node(1, "run-a")
    assert node(0, "run-a") is first and node(1, "run-a") is other
    fresh = node(0, "run-b")
    assert fresh is not first
    runs = {run for _, run, _ in client_app._nodes if run}  # "" : deployed nodes, kept
    assert "run-a" not in runs and "run-b" in runs
    # going back to an old run id builds anew and drops run-b's merchants
    again = node(0, "run-a")
    assert again is not first
    assert {run for _, run, _ in client_app._nodes if run} == {"run-a"}
    # another schema in the same run is another node (features built for that schema)
    narrower = numeric_table_schema(["f0", "f1", "f2", "f3"], name="other").to_toml()
    assert client_app._node(_context(mixture_federation, 0, "run-a"), narrower) is not again


def test_a_node_answers_each_round_with_the_scaling_it_was_sent():
    """The node reuses its last scaling only for identical bytes: a new one is used at once."""
    from fedseg.client.statistics import displacement_statistics
    from fedseg.privacy.scaling import FeatureScaling

    rng = np.random.default_rng(3)
    x = rng.uniform(-5, 5, size=(50, 2))
    node = bare_node(x, lower=-10.0, upper=10.0)
    plan = accepted_plan(cluster_displacements=0.0)
    centres = np.array([[-1.0, 0.0], [1.0, 0.0]])
    edges = np.array([0.0, 0.5, 1.0, np.inf])
    for mean, radius in [(0.0, 3.0), (0.0, 3.0), (1.0, 3.0), (1.0, 2.0)]:
        scaling = FeatureScaling(
            names=("f0", "f1"), log=(False, False), lower=(-np.inf, -10.0), upper=(10.0, np.inf),
            mean=(mean, mean), scale=(2.0, 2.0),
        )  # fmt: skip
        payload = {**scaling.to_payload(), "radius": radius, "centres": centres,
                   "distance_edges": edges, "release": "cluster_displacements"}  # fmt: skip
        reply = node.answer("cluster_displacements", payload, plan)
        expected = displacement_statistics(
            scaling.transform(x), centres, radius=radius, distance_edges=edges
        )
        for part, values in expected.items():
            np.testing.assert_array_equal(reply[part], values)
