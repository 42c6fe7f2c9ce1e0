"""``flwr run .``: the real fedseg apps in Flower's own local simulation, on built-in data.

Flower's simulation gives each ClientApp only its ``partition-id`` and ``num-partitions``.
These two thin wrappers — the components pyproject.toml names — fill in what a simulated
merchant needs and then hand every message, unchanged, to the real ClientApp and ServerApp:
the built-in synthetic federation (generated once per merchant count and seed, into a cache
directory), its public ``as-of``, and where the model goes. A run config that names its own
``sim-data-dir`` (a federation on disk) is used as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fedseg.client.app import app as merchant_app
from fedseg.privacy.protocol.tasks import MESSAGE_KINDS
from fedseg.server.app import main as run_server
from fedseg.simulations.data.events import AS_OF
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

BUILTIN_USERS = 20_000
PUBLIC = {"as-of": f"{AS_OF}Z"}  # the built-in federation's public run parameters

server_app = ServerApp()
client_app = ClientApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    defaults = {**PUBLIC, "out-dir": str(Path.cwd() / "fedseg-out")}
    context.run_config = {**defaults, **{k: v for k, v in context.run_config.items() if v != ""}}
    log(20, "fedseg: writing the model to %s", context.run_config["out-dir"])
    run_server(grid, context)


def _handler(task: str):
    def handle(message: Message, context: Context) -> Message:
        run = context.run_config
        if not run.get("sim-data-dir"):
            merchants = int(context.node_config["num-partitions"])
            data = builtin_federation(merchants, seed=max(int(run.get("seed", 0)), 0))
            run = {**run, **PUBLIC, "sim-data-dir": str(data)}
            # Flower freezes a ClientApp's run config: the real app gets a view of the same
            # node (its state included) with the built-in federation filled in.
            context = Context(context.run_id, context.node_id, context.node_config,
                              context.state, run)  # fmt: skip
        return merchant_app(message, context)

    handle.__name__ = task
    return handle


for _task, _kind in MESSAGE_KINDS.items():
    getattr(client_app, _kind)(_task)(_handler(_task))


def builtin_federation(merchants: int, *, seed: int) -> Path:
    """The built-in synthetic federation for ``merchants`` merchants, generated once into
    ``$FEDSEG_CACHE`` (default ~/.cache/fedseg) and reused by every later process."""
    from fedseg.simulations.data.federation import write_federation
    from fedseg.simulations.data.synthetic import generate_federation

    cache = Path(os.environ.get("FEDSEG_CACHE", Path.home() / ".cache" / "fedseg"))
    target = cache / f"builtin-{merchants}m-{BUILTIN_USERS}u-seed{seed}"
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=cache, prefix=".building-"))
    fed = generate_federation(users=BUILTIN_USERS, merchants=merchants, seed=seed)
    write_federation(fed, scratch / "fed")
    try:
        os.rename(scratch / "fed", target)  # atomic: concurrent processes keep the first
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
