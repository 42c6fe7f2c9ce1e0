"""Driving the shipped ClientApp as a server would: record a real run's requests, replay
them, or send hand-made (hostile) ones, through Flower messages and the in-process Grid.
Used by the privacy tests and the audit benchmark."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fedseg.client.app import app as client_app
from fedseg.privacy.protocol.records import from_records, to_records
from fedseg.privacy.protocol.tasks import message_type
from fedseg.server.app import app as server_app
from fedseg.simulations.backends.inprocess import SUPERLINK_NODE_ID, InProcessGrid, run_inprocess
from flwr.app import Message
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


@dataclass
class Recorder:
    """A ClientApp stand-in that records every request one node receives, then answers
    it with the real ClientApp."""

    node_id: int
    requests: list[tuple[str, dict]] = field(default_factory=list)

    def __call__(self, message: Message, context) -> Message:
        if message.metadata.dst_node_id == self.node_id:
            task = message.metadata.message_type.split(".", 1)[1]
            self.requests.append((task, from_records(message.content)))
        return client_app(message, context)


def simulation_config(data_dir: Path, out_dir: Path, **config: Any) -> dict:
    """A simulation run config as ``fedseg simulate`` builds it (seeded, in-memory ledgers)."""
    n = len(list((data_dir / "merchants").iterdir()))
    return {
        "seed": 0,
        "out-dir": str(out_dir),
        "sim-data-dir": str(data_dir),
        "sim-run-id": uuid.uuid4().hex,
        "expected-nodes": n,
        **config,
    }


def record(
    data_dir: Path, out_dir: Path, *, node: int = 2, **config: Any
) -> list[tuple[str, dict]]:
    """Every request the shipped ServerApp sends node ``node`` in one real run."""
    run_config = simulation_config(data_dir, out_dir, **config)
    recorder = Recorder(node)
    n = run_config["expected-nodes"]
    run_inprocess(server_app, recorder, num_nodes=n, run_config=run_config)
    return recorder.requests


class Merchants:
    """The shipped ClientApp behind an in-process Grid, addressed message by message."""

    def __init__(self, run_config: Mapping[str, Any], *, num_nodes: int, node_config=None):
        run = Run.create_empty(run_id=1)
        run.override_config = {**run_config, "sim-run-id": uuid.uuid4().hex}
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = (
            run.run_id,
            SUPERLINK_NODE_ID,
            1,
        )
        self.sent: list[Message] = []
        self.grid = InProcessGrid(
            client_app, num_nodes, run=run, node_config=node_config, on_reply=self.sent.append
        )

    def ask(self, task: str, payload: Mapping[str, Any], node: int = 2) -> Message:
        """The reply message of node ``node`` to one request."""
        message = Message(to_records(dict(payload)), node, message_type(task))
        (reply,) = self.grid.send_and_receive([message])
        return reply

    def answer(self, task: str, payload: Mapping[str, Any], node: int = 2) -> dict[str, Any]:
        """The decoded reply; an error reply fails with its code."""
        reply = self.ask(task, payload, node)
        if reply.has_error():
            raise AssertionError(f"{task}: error reply {reply.error.reason}")
        return from_records(reply.content)


def arrays(payload: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: v for k, v in payload.items() if isinstance(v, np.ndarray)}
