"""Shared fixtures: small federations written to disk, as merchants would have them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fedseg.privacy.protocol.builtin import numeric_table_schema


def write_blob_federation(
    root: Path, *, n: int, d: int, k: int, merchants: int, seed: int, spread: float = 10.0
) -> Path:
    """A features-kind federation: Gaussian blobs, merchant m gets every merchants-th row."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (k, d))
    labels = rng.integers(k, size=n)
    x = centres[labels] + rng.normal(size=(n, d))
    (root / "merchants").mkdir(parents=True, exist_ok=True)
    truth = []
    for m in range(merchants):
        rows = np.arange(m, n, merchants)
        ids = [f"cust-{m}-{i}" for i in rows]
        table = pd.DataFrame(x[rows], columns=[f"f{j}" for j in range(d)])
        table.insert(0, "user_id", ids)
        table.to_csv(root / "merchants" / f"m{m:02d}.csv", index=False)
        truth.append(
            pd.DataFrame({"merchant_id": f"m{m:02d}", "user_id": ids, "segment": labels[rows]})
        )
    pd.concat(truth).to_csv(root / "truth.csv", index=False)
    # The operator's schema: the columns, with both bounds unknown (found privately).
    (root / "schema.toml").write_text(numeric_table_schema([f"f{j}" for j in range(d)]).to_toml())
    (root / "federation.toml").write_text('features = "schema.toml"\n')
    return root


@pytest.fixture
def mixture_federation(tmp_path: Path) -> Path:
    return write_blob_federation(tmp_path / "fed", n=3000, d=4, k=3, merchants=3, seed=7)


def assert_no_identifier_sent(blob: bytes, raw: pd.DataFrame, pseudonyms) -> None:
    """No raw user id, pseudonym or e-mail of this merchant appears in the sent bytes."""
    for user_id in raw["user_id"].astype(str).unique():
        assert user_id.encode() not in blob, f"raw user id {user_id} was sent"
    for pseudonym in list(pseudonyms)[:200]:
        assert pseudonym.encode() not in blob, "a pseudonym was sent"
    for email in raw["email"].dropna().unique()[:200]:
        assert email.encode() not in blob, "an email was sent"


def assert_no_per_customer_array(files, sizes) -> None:
    """No traced array has as many rows as some merchant has customers."""
    for f in files:
        for array in traced_arrays(f.read_bytes()):
            assert array.ndim <= 2 and not set(array.shape) & set(sizes), array.shape


def traced_arrays(data: bytes) -> list[np.ndarray]:
    """Every array in one traced message (``--trace`` writes Flower's protobuf bytes)."""
    from fedseg.privacy.protocol.records import from_records
    from flwr.common.serde import message_from_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage

    message = message_from_proto(ProtoMessage.FromString(data))
    if message.has_error():  # an error reply carries a code, no content
        return []
    return [v for v in from_records(message.content).values() if isinstance(v, np.ndarray)]


def accepted_plan(count: int = 100, placement: str = "", **noise: float):
    """A merchant's accepted plan: each named release kind at its noise multiplier;
    ``placement`` "local" or "distributed" makes it a secure-aggregation plan."""
    from fedseg.client.plan import AcceptedPlan
    from fedseg.privacy.accounting import Release
    from fedseg.privacy.plan import RunPlan

    planned = tuple(Release(k, z, count=count) for k, z in noise.items())
    secure = {"noise": placement, "secure": True, "dropout_tolerance": 0.2} if placement else {}
    return AcceptedPlan(RunPlan(planned, **secure))


def bare_node(x, *, lower=None, upper=None, log=None, epsilon_cap=float("inf"), noise_seed=(0, 0)):
    """A MerchantNode over feature rows ``x`` (columns f0, f1, …) with an in-memory ledger;
    ``lower``/``upper`` are the schema's public bounds (None: unknown, found privately)."""
    from fedseg.client.node import MerchantNode
    from fedseg.client.policy import MerchantPolicy
    from fedseg.privacy.ledger import PrivacyLedger
    from fedseg.privacy.protocol.schema import Feature, FeatureSchema

    d = np.shape(x)[1]
    bound = lambda b: [None] * d if b is None else [float(v) for v in np.broadcast_to(b, d)]  # noqa: E731
    schema = FeatureSchema(tuple(
        Feature(f"f{j}", lower=lo, upper=hi, log=flag)
        for j, (lo, hi, flag) in enumerate(zip(bound(lower), bound(upper), log or (False,) * d, strict=True))
    ))  # fmt: skip
    policy = MerchantPolicy(epsilon_cap=epsilon_cap)
    ledger = PrivacyLedger(None, epsilon_cap=epsilon_cap, delta=policy.delta)
    return MerchantNode(x, schema=schema, ledger=ledger, policy=policy, noise_seed=noise_seed)


def run_on_grid(server_app, grid_class, client_app, *, num_nodes: int, run_config: dict):
    """Run the ServerApp to completion over ``grid_class`` (an ``InProcessGrid`` subclass
    that loses or delays some replies, as a real transport can); returns the grid."""
    from fedseg.simulations.backends.inprocess import SUPERLINK_NODE_ID
    from flwr.app import Context, RecordDict
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity

    run = Run.create_empty(run_id=1)
    run.override_config = dict(run_config)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = (1, SUPERLINK_NODE_ID, 1)
    grid = grid_class(client_app, num_nodes, run=run)
    context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)
    )
    server_app(grid, context)
    return grid
