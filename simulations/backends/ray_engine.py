"""Flower's Ray simulation engine, driven from Python with the run config fedseg needs.

``flwr.simulation.run_simulation`` cannot pass a run config, so this calls the function
it wraps. To use an existing Ray cluster, set ``RAY_ADDRESS`` before calling (see
docs/simulations.md); Ray then attaches to it instead of starting a local one.
"""

from __future__ import annotations

import tempfile

from fedseg.simulations.deploy.commands import write_app_project
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import ServerApp
from flwr.simulation.run_simulation import _run_simulation
from flwr.supercore.constant import NOOP_FEDERATION_ID
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.supercore.telemetry import EventType


def run_ray(
    server_app: ServerApp, client_app: ClientApp, *, num_nodes: int, run_config: dict
) -> None:
    run = Run.create_empty(run_id=1)
    run.override_config = dict(run_config)
    run.federation_id = NOOP_FEDERATION_ID  # the engine's link state only knows this one
    run.primary_task_id = 1
    # Messages created by the ServerApp take their run and sender from the task identity.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, SUPERLINK_NODE_ID, 1
    context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)
    )
    # The engine gives nodes only the run-config keys an app project declares: declare ours.
    app_dir = tempfile.mkdtemp(prefix="fedseg-ray-app-")
    write_app_project(app_dir, run_config)
    _run_simulation(
        num_supernodes=num_nodes,
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app=client_app,
        server_app=server_app,
        backend_name="ray",
        backend_config={"client_resources": {"num_cpus": 1}},
        server_app_context=context,
        run=run,
        app_dir=app_dir,
        is_app=True,  # only then does the engine read the app project's config for nodes
    )
