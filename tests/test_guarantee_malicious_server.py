"""A server that lies: the merchant decides its privacy parameters, not the request.

Each test plays the malicious operator of DESIGN.md's threat model against the shipped
ClientApp: it picks δ and sampling rates in the run config, asks past a merchant's cap,
outside the accepted plan, twice with the same request id, and reads error replies.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import write_blob_federation
from fedseg.client.app import settings_from_context
from fedseg.privacy.accounting import Release
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.protocol.builtin import ecommerce_schema, numeric_table_schema
from fedseg.privacy.protocol.codes import CODES, reason
from fedseg.simulations.backends.replay import Merchants
from flwr.app import Context, RecordDict
from flwr.common.serde import message_to_proto

EDGES = np.tile(np.linspace(-20.0, 20.0, 9), (2, 1))
# The operator's schema for the blob federation's feature tables (both bounds unknown).
DESCRIBE = {"schema": numeric_table_schema(["f0", "f1"]).to_toml()}


@pytest.fixture
def federation(tmp_path):
    return write_blob_federation(tmp_path / "fed", n=300, d=2, k=2, merchants=2, seed=3)


def merchants(fed, **run_config) -> Merchants:
    config = {"sim-data-dir": str(fed), "seed": 0, "epsilon": 8.0, **run_config}
    return Merchants(config, num_nodes=2)


def charged(state) -> list[tuple[str, float]]:
    """What merchant m00's own ledger file recorded."""
    path = state / "m00" / "ledger.json"
    if not path.exists():
        return []
    return [(r["name"], r["noise_multiplier"]) for r in json.loads(path.read_text())["releases"]]


def plan(*releases: Release, **options) -> dict:
    return {"plan": RunPlan(tuple(releases), **options).to_json()}


def histograms(**extra) -> dict:
    return {"edges": EDGES, "release": "feature_ranges", "request_id": 0, **extra}


def code_of(reply) -> str:
    assert reply.has_error(), "expected an error reply"
    return reply.error.reason


def test_the_run_config_cannot_set_a_deployed_merchants_policy(tmp_path):
    """δ = 0.99, a huge cap, a simulation directory and a seed in the run config change
    nothing for a deployed merchant: its node config alone decides."""
    node_config = {
        "data-path": str(tmp_path / "shop.csv"),
        "key-file": str(tmp_path / "shop.key"),
        "state-dir": str(tmp_path / "state"),
    }
    hostile_run = {
        "delta": 0.99, "epsilon": 1e6, "sim-epsilon-cap": 1e6, "seed": 3,
        "sim-data-dir": str(tmp_path / "elsewhere"), "as-of": "2025-01-01",
    }  # fmt: skip
    context = Context(1, 2, node_config, RecordDict(), hostile_run)
    settings = settings_from_context(context)
    assert settings.policy.delta == 1e-6 and settings.policy.epsilon_cap == 1.0
    assert settings.simulation_seed is None and settings.data_path == node_config["data-path"]
    assert settings.as_of == "2025-01-01"  # the one public parameter a run may set
    own = settings_from_context(Context(1, 2, {**node_config, "delta": 1e-8}, RecordDict(), {}))
    assert own.policy.delta == 1e-8


def test_a_plan_past_the_cap_is_refused_before_any_release(federation, tmp_path):
    group = merchants(federation, **{"sim-epsilon-cap": 1.0, "sim-state-dir": str(tmp_path)})
    group.answer("describe", DESCRIBE)
    greedy = plan(Release("feature_ranges", 0.5), Release("cluster_displacements", 0.5, count=4))
    assert code_of(group.ask("plan", greedy)) == reason("plan_refused")
    # Without an accepted plan nothing is answered, and nothing was spent.
    assert code_of(group.ask("feature_histograms", histograms())) == reason("bad_request")
    assert charged(tmp_path) == []


def test_only_requests_inside_the_accepted_plan_are_answered(federation, tmp_path):
    group = merchants(federation, **{"sim-state-dir": str(tmp_path)})
    group.answer("describe", DESCRIBE)
    group.answer("plan", plan(Release("feature_ranges", 40.0, count=2)))
    # A request naming its own noise multiplier (or sampling rate) changes nothing.
    group.answer("feature_histograms", histograms(noise_multiplier=1e-9, sampling_rate=1.0))
    group.answer("feature_histograms", histograms(request_id=1))
    third = group.ask("feature_histograms", histograms(request_id=2))
    assert code_of(third) == reason("bad_request")  # the plan listed two
    other = group.ask(
        "cluster_displacements", {"release": "cluster_displacements", "request_id": 3}
    )
    assert code_of(other) == reason("bad_request")  # a kind the plan lacks
    assert charged(tmp_path) == [("feature_ranges", 40.0)] * 2


def test_the_same_request_twice_never_gets_the_same_noise(federation):
    """Seeded merchants number their noise streams on their own ledger: a replayed request
    id draws new noise (identical noise on two queries would cancel in their difference)."""
    group = merchants(federation)
    group.answer("describe", DESCRIBE)
    group.answer("plan", plan(Release("feature_ranges", 5.0, count=3)))
    first = group.answer("feature_histograms", histograms())
    again = group.answer("feature_histograms", histograms())  # same request id
    assert not np.allclose(first["counts"], again["counts"])
    replay = merchants(federation)  # the same seeded federation, from the start
    replay.answer("describe", DESCRIBE)
    replay.answer("plan", plan(Release("feature_ranges", 5.0, count=3)))
    np.testing.assert_array_equal(replay.answer("feature_histograms", histograms())["counts"],
                                  first["counts"])  # fmt: skip


def test_a_dpsgd_plan_must_use_the_merchants_own_sampling_rate(federation):
    group = merchants(federation)
    group.answer("describe", DESCRIBE)
    wrong = plan(Release("recommender_dpsgd", 1.0, count=10, sampling_rate=0.9))
    assert code_of(group.ask("plan", wrong)) == reason("plan_refused")
    right = plan(Release("recommender_dpsgd", 3.0, count=10, sampling_rate=0.1))
    assert group.answer("plan", right)["accepted"] == 1


def test_an_error_reply_carries_a_code_and_nothing_of_the_data(tmp_path):
    """A price column full of e-mail addresses: the operator learns "data_error", not one
    address, row or value."""
    fed = tmp_path / "fed"
    (fed / "merchants").mkdir(parents=True)
    emails = [f"customer{i}@example.com" for i in range(50)]
    dirty = pd.DataFrame(
        {
            "user_id": [f"shopper-{i}" for i in range(50)],
            "timestamp": "2024-05-01T10:00:00",
            "event": "purchase",
            "item_id": "sku-1",
            "price": emails,
        }
    )
    dirty.to_csv(fed / "merchants" / "m0.csv", index=False)
    group = Merchants({"sim-data-dir": str(fed), "seed": 0}, num_nodes=1)
    reply = group.ask("describe", {"schema": ecommerce_schema().to_toml()})
    assert reply.error.reason == reason("data_error")
    assert reply.error.code == CODES["data_error"][0]
    sent = message_to_proto(reply).SerializeToString()
    for cell in [*emails, *dirty["user_id"], "price", "m0.csv", "row"]:
        assert cell.encode() not in sent


def test_the_plan_is_readable_only_as_a_plan(federation):
    group = merchants(federation)
    group.answer("describe", DESCRIBE)
    for broken in ("{", json.dumps({"version": 1}), json.dumps({"version": 99, "releases": []})):
        assert code_of(group.ask("plan", {"plan": broken})) == reason("bad_request")


def test_a_request_cannot_make_the_merchant_hold_unbounded_centres(federation, tmp_path):
    """A lying server asks for displacements to 100,001 'centres' (an n × 10⁵ distance
    matrix at the merchant): refused with a code before anything is charged."""
    from fedseg.client.node import MAX_CENTRES
    from fedseg.server import lloyd

    group = merchants(federation, **{"sim-state-dir": str(tmp_path)})
    group.answer("describe", DESCRIBE)
    group.answer("plan", plan(Release("cluster_displacements", 5.0, count=2)))
    scaling = {"lower": np.full(2, -np.inf), "upper": np.full(2, np.inf),
               "mean": np.zeros(2), "scale": np.ones(2)}  # fmt: skip
    request = {**scaling, "release": "cluster_displacements", "radius": 1.0,
               "distance_edges": lloyd.distance_edges(2), "request_id": 0}  # fmt: skip
    huge = group.ask(
        "cluster_displacements", {**request, "centres": np.zeros((MAX_CENTRES + 1, 2))}
    )
    assert code_of(huge) == reason("bad_request")
    assert charged(tmp_path) == []
    fair = group.answer("cluster_displacements", {**request, "centres": np.zeros((3, 2))})
    assert fair["sums"].shape == (3, 2)
    assert charged(tmp_path) == [("cluster_displacements", 5.0)]
