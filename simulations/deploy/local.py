"""A whole fedseg deployment on one machine: one SuperLink, one SuperNode per merchant.

Real Flower processes on 127.0.0.1 with free ports, TLS and SuperNode authentication,
driven through the requests an operator's ``flwr supernode register``, ``flwr run`` and
``flwr ls`` send (simulations/deploy/control.py, from this process; ``flwr`` itself for
anything else). Used by ``fedseg demo-deploy`` and the
end-to-end tests. ``LocalDeployment`` is a context manager: leaving it stops every
process it started (and their children), also on errors and at interpreter exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedseg.simulations.deploy.commands import (
    DEFAULT_POLL_S,
    SUPERLINK_ENV,
    connection_entry,
    node_config_arg,
    superlink_command,
    supernode_command,
    write_app_project,
    write_flwr_config,
)
from fedseg.simulations.deploy.control import OperatorControl
from fedseg.simulations.deploy.pki import (
    DEFAULT_HOSTS,
    NodeKeyFiles,
    TlsFiles,
    write_node_keypair,
    write_tls_certificates,
)
from fedseg.simulations.deploy.processes import (
    DeploymentError,
    ProcessGroup,
    Service,
    flower_executable,
    free_port,
)

CONNECTION = "fedseg-local"
_FINISHED = "finished:"


@dataclass(frozen=True)
class Merchant:
    """One merchant's SuperNode settings (its ``--node-config``)."""

    merchant_id: str
    data_path: Path
    epsilon_cap: float
    state_dir: Path
    key_file: Path | None = None  # HMAC pseudonym key; None only in test mode
    test_seed: int | None = None  # deterministic test mode, never in production
    signing_key: Path | None = None  # long-term Ed25519 key for secure aggregation
    roster: Path | None = None  # the pinned federation roster of signing keys

    def node_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "data-path": str(self.data_path),
            "merchant-id": self.merchant_id,
            "epsilon-cap": float(self.epsilon_cap),
            "state-dir": str(self.state_dir),
        }
        if self.key_file is not None:
            config["key-file"] = str(self.key_file)
        if self.test_seed is not None:
            config["seed"] = int(self.test_seed)
        if self.signing_key is not None and self.roster is not None:
            config["signing-key"] = str(self.signing_key)
            config["secagg-roster"] = str(self.roster)
        return config


@dataclass
class Node:
    merchant: Merchant
    keys: NodeKeyFiles
    node_id: int | None = None  # given by the SuperLink at registration
    service: Service | None = None


@dataclass
class LocalDeployment:
    """Start, drive and stop a local federation under ``work_dir``."""

    work_dir: Path
    insecure: bool = False
    startup_timeout_s: float = 60.0
    # How each SuperNode runs (simulations/backends/supernode.py): one long-lived ClientApp
    # process, and this poll while a run is active; False / None: Flower's own.
    worker: bool = True
    poll_interval: float | None = DEFAULT_POLL_S
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir).resolve()
        self.flwr_home = self.work_dir / "flwr-home"
        env = {
            **SUPERLINK_ENV,  # unless the environment sets them, as `fedseg superlink`
            **os.environ,
            "FLWR_HOME": str(self.flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
        }
        self.processes = ProcessGroup(self.work_dir / "logs", env=env)
        self.tls: TlsFiles | None = None
        self.port = 0
        self.control: OperatorControl | None = None  # the SuperLink's Control API, once up

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.processes.stop_all()

    # -- operator --------------------------------------------------------------

    def start_superlink(self) -> None:
        """Trial certificates, then ``flower-superlink`` on a free port; wait until it answers."""
        if not self.insecure:
            self.tls = write_tls_certificates(self.work_dir / "certs", hosts=DEFAULT_HOSTS)
        self.port = free_port()
        command = superlink_command(port=self.port, tls=self.tls, insecure=self.insecure)
        address = f"127.0.0.1:{self.port}"
        entry = connection_entry(
            address, ca_cert=self.tls and self.tls.ca_cert, insecure=self.insecure
        )
        write_flwr_config(self.flwr_home, {CONNECTION: entry}, default=CONNECTION)
        self.control = OperatorControl(
            address, ca_cert=self.tls and self.tls.ca_cert, insecure=self.insecure
        )
        service = self.processes.start("superlink", _resolve(command), cwd=self.work_dir)
        self.wait_until(
            lambda: "Uvicorn running" in service.log_tail(50), service, "SuperLink start"
        )

    def add_merchant(self, merchant: Merchant, *, register: bool = True) -> Node:
        """Give the merchant a SuperNode key pair and (as the operator) register its public key."""
        keys = write_node_keypair(self.work_dir / "node-keys", merchant.merchant_id)
        node = Node(merchant, keys)
        if register:
            node.node_id = self.control.register_node(keys.public_key)
        self.nodes[merchant.merchant_id] = node
        return node

    def submit(self, run_config: Mapping[str, Any]) -> int:
        """Write the app project with ``run_config`` and submit it as ``flwr run`` does; return
        the run id."""
        app_dir = write_app_project(self.work_dir / "app", run_config).parent
        return self.control.start_run(app_dir)

    def run_status(self, run_id: int) -> str:
        return self.control.run_status(run_id)

    def wait_for_run(self, run_id: int, out_dir: Path, *, timeout_s: float) -> str:
        """Wait until the run is finished (model.json written or status ``finished:*``)."""
        deadline = time.monotonic() + timeout_s
        status, next_check = "unknown", 0.0
        while time.monotonic() < deadline:
            if (out_dir / "model.json").exists() or time.monotonic() >= next_check:
                status = self.run_status(run_id)
                if status.startswith(_FINISHED):
                    return status
                next_check = time.monotonic() + 5.0
            time.sleep(0.2)
        raise DeploymentError(
            f"run {run_id}: not finished after {timeout_s:.0f} s (last status {status})"
        )

    # -- merchants -------------------------------------------------------------

    def start_supernode(self, merchant_id: str) -> Service:
        node = self.nodes[merchant_id]
        command = supernode_command(
            superlink=f"127.0.0.1:{self.port}",
            node_config=node.merchant.node_config(),
            runtime_port=free_port(),
            ca_cert=self.tls and self.tls.ca_cert,
            auth_private_key=None if self.insecure else node.keys.private_key,
            insecure=self.insecure,
            poll_interval=self.poll_interval,
            worker=self.worker,
        )
        node.service = self.processes.start(
            f"supernode-{merchant_id}", _resolve(command), cwd=self.work_dir
        )
        return node.service

    def wait_connected(self, merchant_id: str) -> None:
        """Wait until the SuperNode reports its node id (it connected and was accepted)."""
        service = self.nodes[merchant_id].service
        self.wait_until(
            lambda: "SuperNode ID:" in service.log_tail(200), service, f"{merchant_id} connect"
        )

    def wait_exit(self, service: Service, *, timeout_s: float = 60.0) -> int:
        try:
            return service.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DeploymentError(
                f"{service.name}: still running after {timeout_s:.0f} s"
            ) from None

    def node_names(self) -> dict[int, str]:
        return {n.node_id: m for m, n in self.nodes.items() if n.node_id is not None}

    # -- plumbing --------------------------------------------------------------

    def flwr(self, *args: str) -> dict[str, Any]:
        """Run the ``flwr`` CLI against this deployment and parse its JSON output."""
        done = subprocess.run(
            [flower_executable("flwr"), *args],
            env=self.processes.env,
            cwd=self.work_dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        start = done.stdout.find("{")
        try:
            reply = json.loads(done.stdout[start:]) if start >= 0 else {}
        except json.JSONDecodeError:
            reply = {}
        if done.returncode != 0 or not reply.get("success", False):
            raise DeploymentError(
                f"flwr {' '.join(args)} failed: {done.stdout}{done.stderr}".strip()
            )
        return reply

    def wait_until(
        self, ready: Callable[[], bool], service: Service, step: str, *, timeout_s: float = 0.0
    ) -> None:
        """Poll ``ready`` until true; fail early, with the log, if ``service`` exits."""
        deadline = time.monotonic() + (timeout_s or self.startup_timeout_s)
        while time.monotonic() < deadline:
            if ready():
                return
            if not service.running():
                raise DeploymentError(f"{step}: {service.name} exited; log:\n{service.log_tail()}")
            time.sleep(0.2)
        raise DeploymentError(f"{step}: timed out; {service.log_path}:\n{service.log_tail()}")


def _resolve(command: list[str]) -> list[str]:
    return [flower_executable(command[0]), *command[1:]]


__all__ = ["Merchant", "LocalDeployment", "node_config_arg"]
