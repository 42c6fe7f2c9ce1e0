"""The fedseg Flower ClientApp: a merchant's node, answering the server's requests.

Thin adapter over ``MerchantNode``. Settings come from the node config in deployments
(``data-path``, ``key-file``, ``epsilon-cap``, ``state-dir``) and from the run config
in simulations (``sim-data-dir``, ``sim-state-dir``, ``seed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fedseg.client.merchant import MerchantSettings, build_node, simulation_source
from fedseg.client.node import MerchantNode
from fedseg.client.secure import secure_step
from fedseg.privacy.wire import array_fields, decode_array
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()
SECAGG_STATE = "fedseg.secagg"
_nodes: dict[
    tuple[MerchantSettings, str], MerchantNode
] = {}  # one node per merchant setting, per process
_latest_run = [""]  # the simulation run whose merchants were last added to _nodes


def settings_from_context(context: Context) -> MerchantSettings:
    node, run = context.node_config, context.run_config
    epsilon = float(run.get("epsilon", 1.0))
    delta = float(node.get("delta", run.get("delta", 1e-6)))
    if "sim-data-dir" in run:  # simulation: data and state laid out by the runner
        pid = int(node["partition-id"])
        source = simulation_source(str(run["sim-data-dir"]), pid)
        state_root = str(run.get("sim-state-dir", ""))
        return MerchantSettings(
            data_path=str(source),
            merchant_id=source.stem,
            epsilon_cap=float(run.get("sim-epsilon-cap", epsilon)),
            delta=delta,
            state_dir=str(Path(state_root) / source.stem) if state_root else "",
            simulation_seed=max(int(run.get("seed", 0)), 0),
            holdout_last=str(run.get("sim-holdout-last", False)).lower() in ("1", "true", "yes"),
        )
    data_path = str(node.get("data-path", ""))
    # Node-config `seed` is a deterministic test mode (tests only, never in production):
    # noise and pseudonym key then follow (seed, merchant-id) exactly as in a simulation.
    test_seed = int(node["seed"]) if "seed" in node else None
    return MerchantSettings(
        data_path=data_path,
        merchant_id=str(node.get("merchant-id", Path(data_path).stem)),
        epsilon_cap=float(node.get("epsilon-cap", epsilon)),
        delta=delta,
        key_file="" if test_seed is not None else str(node.get("key-file", "")),
        state_dir=str(node.get("state-dir", "")),
        simulation_seed=test_seed,
    )


def _node(context: Context) -> MerchantNode:
    settings = settings_from_context(context)
    # A simulation's throw-away merchants (ledgers in memory) belong to one run only;
    # a new simulation run in this process replaces the previous one's.
    run = str(context.run_config.get("sim-run-id", ""))
    key = (settings, run)
    node = _nodes.get(key)
    if node is None:
        # Sweep only when the run changes: a sweep per new merchant made a simulation
        # with n merchants cost O(n²) (10,000 merchants: ~17 s of the run).
        if run and run != _latest_run[0]:
            for stale in [k for k in _nodes if k[1] and k[1] != run]:
                del _nodes[stale]
            _latest_run[0] = run
        node = _nodes[key] = build_node(settings)
    return node


def _answer(task: str, message: Message, context: Context) -> Message:
    payload = from_records(message.content)
    if "secagg_stage" not in payload:
        return Message(to_records(_node(context).handle(task, payload)), reply_to=message)
    # A secure round spans four messages; its state stays in this node's own Context.
    kept = context.state.get(SECAGG_STATE)
    state = kept["state"] if isinstance(kept, ConfigRecord) else None
    reply, state = secure_step(_node(context), context.node_id, task, payload, state)
    if state is None:
        context.state.pop(SECAGG_STATE, None)
    else:
        context.state[SECAGG_STATE] = ConfigRecord({"state": state})
    return Message(to_records(reply), reply_to=message)


# Statistics rounds are QUERY messages, K-means training rounds TRAIN messages.
TASKS = {
    "describe": "query",
    "feature_histograms": "query",
    "square_norm": "query",
    "cluster_stats": "train",
    "item_popularity": "query",
    "item_gram": "query",
    "content_check": "query",
    "recommender_train": "train",
}


def _handler(task: str):
    def handle(message: Message, context: Context) -> Message:
        return _answer(task, message, context)

    handle.__name__ = task
    return handle


for _task, _kind in TASKS.items():
    getattr(app, _kind)(_task)(_handler(_task))


def to_records(payload: dict[str, Any]) -> RecordDict:
    # Filled item by item: ArrayRecord(array_dict=...) builds every Array a second time
    # (and a throw-away record), a third of a small reply's encoding time.
    arrays = ArrayRecord()
    for k, v in payload.items():
        if isinstance(v, np.ndarray):
            arrays[k] = Array(*array_fields(v))
    config = {k: v for k, v in payload.items() if not isinstance(v, np.ndarray)}
    return RecordDict({"arrays": arrays, "config": ConfigRecord(config)})


def from_records(records: RecordDict) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for record in records.values():
        if isinstance(record, ArrayRecord):
            payload.update({k: decode_array(a) for k, a in record.items()})
        elif isinstance(record, ConfigRecord):
            payload.update(dict(record))
    return payload
