"""The in-process Grid with forked workers: the same run, to the last bit, as one process."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from fedseg.simulations.backends.inprocess import InProcessGrid, run_inprocess
from fedseg.simulations.data.federation import write_federation
from fedseg.simulations.data.synthetic import generate_federation
from fedseg.simulations.experiments.runner import default_workers, simulate
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.serverapp import ServerApp
from flwr.supercore.run import Run


def _outputs(tmp_path, name, data, config, workers):
    out, trace = tmp_path / f"{name}-out", tmp_path / f"{name}-trace"
    result = simulate(data, config, out_dir=out, trace_dir=trace, evaluate=False, workers=workers)
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in result.model.history]
    traces = {p.name: _timeless(p.read_bytes()) for p in sorted(trace.iterdir())}
    return result.model.centroids.tobytes(), history, result.model.privacy, traces


def _timeless(traced: bytes) -> bytes:
    """A traced message less the time it was made and its time left to live (the fields
    two runs never share)."""
    message = ProtoMessage.FromString(traced)
    message.metadata.ClearField("created_at")
    message.metadata.ClearField("ttl")
    return message.SerializeToString()


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        {"recommender": True, "dropout": 0.1},
        # Secure aggregation's keys come from the OS, never a seed: its messages differ
        # between any two runs, its sums (and so the model) do not.
        {"secure-agg": True, "noise": "distributed"},
    ],
    ids=["recommender-dropout", "secure"],
)
def test_workers_give_the_model_and_messages_of_one_process(tmp_path, extra):
    data = write_federation(generate_federation(users=900, merchants=5, seed=3), tmp_path / "fed")
    config = {"k": 3, "epsilon": 2.0, "seed": 4, **extra}
    one = _outputs(tmp_path, "one", data, config, workers=1)
    three = _outputs(tmp_path, "three", data, config, workers=3)
    assert one[0] == three[0]  # centroids, bit for bit
    assert one[1:3] == three[1:3]  # every round's record and the privacy account
    if not extra.get("secure-agg"):  # every message the merchants sent, byte for byte
        assert one[3] and one[3] == three[3]


def _echo_app() -> ClientApp:
    app = ClientApp()

    @app.query()
    def query(message: Message, context) -> Message:
        if message.content["config"]["fail"]:
            raise ValueError("this merchant fails")
        pid = context.node_config["partition-id"]
        context.state["seen"] = ConfigRecord({"n": context.state.get("seen", {"n": 0})["n"] + 1})
        reply = {"pid": pid, "pid_process": os.getpid(), "n": context.state["seen"]["n"]}
        return Message(RecordDict({"config": ConfigRecord(reply)}), reply_to=message)

    return app


def _ask(grid: InProcessGrid, nodes, *, fail=()) -> list[Message]:
    messages = [
        Message(RecordDict({"config": ConfigRecord({"fail": n in fail})}), n, "query", group_id="1")
        for n in nodes
    ]
    return list(grid.send_and_receive(messages))


def test_each_merchant_lives_in_one_worker_and_replies_come_in_the_order_asked():
    grid = InProcessGrid(_echo_app(), 6, run=Run.create_empty(run_id=1), workers=2)
    try:
        nodes = [7, 2, 5, 3, 6, 4]
        first = _ask(grid, nodes, fail={5})
        assert [m.metadata.src_node_id for m in first] == nodes
        assert first[2].has_error() and "this merchant fails" in first[2].error.reason
        ok = [m.content["config"] for m in first if not m.has_error()]
        assert [c["pid"] for c in ok] == [n - 2 for n in nodes if n != 5]
        assert {c["pid_process"] for c in ok} - {os.getpid()} and len(
            {c["pid_process"] for c in ok}
        ) == 2
        second = _ask(grid, nodes)
        state = {m.metadata.src_node_id: m.content["config"]["n"] for m in second}
        # The node's state survived between messages: it lives in its worker.
        assert state == {n: (1 if n == 5 else 2) for n in nodes}
        ids = [m.metadata.message_id for m in first + second]
        assert len(set(ids)) == len(ids)
    finally:
        grid.close()
    assert not grid._processes


def test_a_worker_that_dies_stops_the_run_with_a_clear_error():
    app = ClientApp()

    @app.query()
    def query(message, context):
        os._exit(3)

    grid = InProcessGrid(app, 2, run=Run.create_empty(run_id=1), workers=2)
    try:
        with pytest.raises(RuntimeError, match="worker .* stopped"):
            _ask(grid, [2, 3])
    finally:
        grid.close()


def test_the_workers_stop_when_the_server_app_fails():
    server = ServerApp()

    @server.main()
    def main(grid, context):
        _ask(grid, [2, 3])
        raise KeyError("the server failed")

    with pytest.raises(KeyError):
        run_inprocess(server, _echo_app(), num_nodes=2, run_config={}, workers=2)
    assert not multiprocessing.active_children()


def test_default_workers_one_per_core_for_many_merchants_only():
    assert default_workers(3) == 1
    assert default_workers(500) == len(os.sched_getaffinity(0))
