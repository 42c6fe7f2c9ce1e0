"""Hostile, broken and slow merchants in real in-process runs of the ServerApp and ClientApp.

Error metric (docs/robustness.md): centres of a run are mapped into the honest run's
standardized space and matched to the honest centres (Hungarian); the error is the largest
matched distance divided by the smallest distance between two honest centres.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mixture_federation
from fedseg.client.app import app as client_app
from fedseg.client.app import from_records, to_records
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.server.aggregation import RoundFailed
from fedseg.server.app import MESSAGE_TYPES, GridTransport
from fedseg.server.app import app as plain_server_app
from fedseg.server.app import from_records as server_from_records
from fedseg.server.config import SegmentationConfig
from fedseg.server.model import SegmentModel
from fedseg.server.robust import RobustAggregator, RobustConfig
from fedseg.server.segmentation import SegmentationRun
from fedseg.server.transport import Reply
from fedseg.server.validation import left_out_table
from fedseg.simulations.inprocess import SUPERLINK_NODE_ID, InProcessGrid, run_inprocess
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.serverapp import ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from scipy.optimize import linear_sum_assignment

MERCHANTS, HOSTILE = 10, (0, 1)
BASE = {"k": 3, "epsilon": 4.0, "delta": 1e-6, "seed": 1}

ATTACKS = {  # each maps a merchant's honest payload to what it sends
    "scale_all_x100": lambda p: {k: v * 100 for k, v in p.items()},
    "scale_counts_x100": lambda p: {k: v * 100 if k == "counts" else v for k, v in p.items()},
    "flip_sums": lambda p: {k: -v if k == "sums" else v for k, v in p.items()},
}


def hostile_client(attack: str, partitions=HOSTILE):
    """The real ClientApp, whose statistics are rewritten for the chosen partitions."""

    def app(message: Message, context: Context) -> Message:
        reply = client_app(message, context)
        pid = int(context.node_config["partition-id"])
        if (
            pid not in partitions
            or reply.has_error()
            or message.metadata.message_type == "query.describe"
        ):
            return reply
        payload = from_records(reply.content)
        arrays = {k: v for k, v in payload.items() if isinstance(v, np.ndarray)}
        return Message(to_records({**payload, **ATTACKS[attack](arrays)}), reply_to=message)

    return app


class SizedGridTransport(GridTransport):
    """GridTransport with the proposed ``max_bytes``: big replies are never decoded."""

    def request(self, task, payload, node_ids, *, max_bytes=None):
        from fedseg.server.app import to_records as server_to_records

        content = server_to_records(payload)
        messages = [
            Message(content=content, dst_node_id=n, message_type=MESSAGE_TYPES[task])
            for n in node_ids
        ]
        return [
            sized_reply(m, max_bytes)
            for m in self.grid.send_and_receive(messages, timeout=self.timeout)
        ]


def sized_reply(message: Message, max_bytes: int | None) -> Reply:
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Reply(node_id, error=message.error.reason or f"error code {message.error.code}")
    arrays = message.content.get("arrays")
    size = arrays.count_bytes() if isinstance(arrays, ArrayRecord) else 0
    if max_bytes is not None and size > max_bytes:
        return Reply(node_id, size_bytes=size)  # not decoded; check_reply names the size
    try:
        return Reply(node_id, payload=server_from_records(message.content), size_bytes=size)
    except (ValueError, TypeError) as exc:
        return Reply(node_id, error=f"undecodable reply: {exc}")


def robust_server(method: str, fitted: list) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid, context):
        cfg = SegmentationConfig.from_run_config(context.run_config)
        transport = SizedGridTransport(grid, timeout=cfg.round_timeout or None)
        aggregate = RobustAggregator(
            transport, min_clients=cfg.min_clients, config=RobustConfig(method=method)
        )
        ledger = PrivacyLedger(None, epsilon_cap=cfg.epsilon, delta=cfg.delta)
        run = SegmentationRun(
            transport, cfg, ledger, np.random.default_rng(cfg.seed), aggregate=aggregate
        )
        fitted.append(run.fit())

    return app


def fit(fed: Path, method: str, client=client_app, **config) -> dict:
    """One run; ``method`` "sum" is the shipped ServerApp (plain aggregation)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_config = {
            **BASE,
            **config,
            "sim-data-dir": str(fed),
            "sim-state-dir": tmp,
            "out-dir": tmp,
        }
        if method == "sum":
            run_inprocess(plain_server_app, client, num_nodes=MERCHANTS, run_config=run_config)
            model = SegmentModel.load(Path(tmp) / "model.json")
            return {
                "scaling": model.scaling,
                "centres": model.centres_standardized,
                "history": model.history,
            }
        fitted: list = []
        run_inprocess(
            robust_server(method, fitted), client, num_nodes=MERCHANTS, run_config=run_config
        )
        return fitted[0]


def centre_error(honest: dict, other: dict) -> float:
    """Largest matched centre distance ÷ smallest gap between honest centres (honest units)."""
    reference = honest["centres"]
    moved = honest["scaling"].transform(other["scaling"].inverse(other["centres"]))
    distance = np.linalg.norm(reference[:, None] - moved[None], axis=2)
    rows, cols = linear_sum_assignment(distance)
    gaps = np.linalg.norm(reference[:, None] - reference[None], axis=2)
    return float(distance[rows, cols].max() / gaps[np.triu_indices(len(reference), 1)].min())


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Path:
    # 2,000 customers per merchant at ε = 4: DP noise moves honest centres by ~2% of the gap.
    root = tmp_path_factory.mktemp("hostile") / "fed"
    return write_mixture_federation(root, n=20_000, d=3, k=3, merchants=MERCHANTS, seed=11)


@pytest.fixture(scope="module")
def honest(federation) -> dict:
    return fit(federation, "sum")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["median", "trimmed"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_robust_aggregation_keeps_centres_within_10_percent(federation, honest, attack, method):
    attacked = fit(federation, method, client=hostile_client(attack))
    assert centre_error(honest, attacked) < 0.10


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["scale_counts_x100", "flip_sums"])
def test_control_plain_aggregation_is_skewed_by_the_same_attack(federation, honest, attack):
    # Both attacks pass every per-reply check (a server cannot know a merchant's size or
    # the sign of its data), so plain summation lets two merchants drag every centre.
    attacked = fit(federation, "sum", client=hostile_client(attack))
    assert centre_error(honest, attacked) > 0.5


@pytest.mark.slow
def test_robust_aggregation_costs_little_without_attack(federation, honest):
    assert centre_error(honest, fit(federation, "median")) < 0.10


# -- broken and slow merchants ------------------------------------------------------------


RAISES, SLOW, PADDED = 2, 4, 5  # partitions: raises on Lloyd rounds, never on time, oversized


def misbehaving_client(message: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    if pid == RAISES and message.metadata.message_type == "train.cluster_stats":
        raise RuntimeError("merchant database went away")
    reply = client_app(message, context)
    if (
        pid == PADDED
        and not reply.has_error()
        and message.metadata.message_type != "query.describe"
    ):
        reply.content["arrays"]["padding"] = Array(np.zeros(200_000))
    return reply


class StragglerGrid(InProcessGrid):
    """In-process grid where partition ``SLOW``'s replies arrive after any deadline."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.late: list[int] = []

    def send_and_receive(self, messages, *, timeout=None):
        replies = list(super().send_and_receive(messages, timeout=timeout))
        late = [r for r in replies if r.metadata.src_node_id == SLOW + 2 and timeout is not None]
        self.late += [r.metadata.src_node_id for r in late]
        return [r for r in replies if r not in late]


def run_with_stragglers(server_app: ServerApp, fed: Path, tmp: Path, **config) -> StragglerGrid:
    run_config = {**BASE, "sim-data-dir": str(fed), "sim-state-dir": str(tmp / "state"),
                  "out-dir": str(tmp / "out"), **config}  # fmt: skip
    run = Run.create_empty(run_id=1)
    run.override_config = dict(run_config)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = (
        run.run_id,
        SUPERLINK_NODE_ID,
        1,
    )
    grid = StragglerGrid(misbehaving_client, 6, run=run)
    server_app(
        grid,
        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config),
    )
    return grid


@pytest.fixture(scope="module")
def small_federation(tmp_path_factory) -> Path:
    return write_mixture_federation(
        tmp_path_factory.mktemp("slow") / "fed", n=3000, d=3, k=3, merchants=6, seed=2
    )


@pytest.mark.parametrize("method", ["sum", "median"])
def test_raising_slow_and_oversized_merchants_do_not_stop_the_run(
    small_federation, tmp_path, method
):
    fitted: list = []
    app = plain_server_app if method == "sum" else robust_server(method, fitted)
    grid = run_with_stragglers(
        app, small_federation, tmp_path, **{"round-timeout": 5.0, "min-clients": 3}
    )
    history = (
        SegmentModel.load(tmp_path / "out" / "model.json").history
        if method == "sum"
        else fitted[0]["history"]
    )
    noisy = [entry for entry in history if entry["task"] != "describe"]
    assert len(grid.late) >= len(noisy) > 0
    for entry in noisy:  # every noisy round went on with the merchants left
        rejected = entry["rejected"]
        assert "no reply before the deadline" in rejected[str(SLOW + 2)]
        assert "'payload'" in rejected[str(PADDED + 2)] and "bytes" in rejected[str(PADDED + 2)]
        if entry["task"] == "feature_histograms":
            assert len(entry["contributors"]) == 4
        else:
            assert len(entry["contributors"]) == 3
            assert "merchant database went away" in rejected[str(RAISES + 2)]
    table = left_out_table(history)
    for node in (RAISES + 2, SLOW + 2, PADDED + 2):
        assert f"| {node} |" in table


def test_too_few_merchants_left_fails_cleanly_with_nothing_released(small_federation, tmp_path):
    with pytest.raises(RoundFailed, match="at least 5 needed; nothing is released"):
        run_with_stragglers(
            plain_server_app, small_federation, tmp_path, **{"round-timeout": 5.0, "min-clients": 5}
        )
    assert not (tmp_path / "out" / "model.json").exists()
