"""Command lines and files for running fedseg on Flower's Deployment Engine.

Pure builders, no process is started here: the operator's ``flower-superlink`` (TLS,
SuperNode authentication, no runtime dependency installation), a merchant's
``flower-supernode`` with its node config, the ``flwr`` SuperLink connection entry,
and the small Flower app project (``pyproject.toml`` only) that ``flwr run`` submits.
The app project carries no code: every machine runs the fedseg it installed itself.

Without TLS everything is refused unless ``insecure=True`` is asked for explicitly,
and then a warning is logged.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from fedseg.server.config import SegmentationConfig, check_keys
from fedseg.simulations.deploy.pki import TlsFiles

log = logging.getLogger(__name__)

DEPLOY_ROUND_TIMEOUT_S = 120.0  # a dead SuperNode costs one round this long, never forever
DEFAULT_POLL_S = 0.2  # a SuperNode's poll while a run is active (Flower alone: 3 s)
FLOWER_POLL_S = 3.0
APP_NAME = "fedseg-segmentation"


class InsecureRefused(ValueError):
    """TLS material is missing and insecure mode was not asked for explicitly."""


def require_tls(certificates: Mapping[str, Path | None], *, insecure: bool, who: str) -> bool:
    """True when TLS is on; refuse (``InsecureRefused``) when a file is missing unless insecure.

    ``certificates`` maps each option (``--ca-cert``) to its file, so the refusal names the
    option and the path. In insecure mode certificates are ignored, and a warning says what
    that means."""
    if insecure:
        log.warning(
            "%s: INSECURE mode - traffic between merchants and the operator is unencrypted "
            "and SuperNodes are not authenticated. Use it only on a trusted test machine.",
            who,
        )
        return False
    missing = [
        f"{option} {path}: no such file" if path else f"{option} not given"
        for option, path in certificates.items()
        if not _is_file(path)
    ]
    if missing:
        raise InsecureRefused(
            f"{who}: refusing to start without TLS ({'; '.join(missing)}); "
            "create trial certificates with `fedseg certs --out DIR`, "
            "or pass --insecure explicitly for a local test"
        )
    return True


def _is_file(path: Path | None) -> bool:
    return path is not None and Path(path).is_file()


# The SuperLink's SuperExec looks for a submitted run every 1 s unless told otherwise.
SUPERLINK_ENV = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1"}


def superlink_command(
    *,
    port: int,
    host: str = "127.0.0.1",
    tls: TlsFiles | None,
    insecure: bool = False,
    database: str | None = None,
) -> list[str]:
    """``flower-superlink`` with TLS on every API and SuperNode authentication enabled."""
    files = (
        {"--certs ca.crt": tls.ca_cert, "--certs server.crt": tls.server_cert,
         "--certs server.key": tls.server_key}
        if tls
        else {"--certs": None}
    )  # fmt: skip
    secure = require_tls(files, insecure=insecure, who="superlink")
    command = [
        "flower-superlink",
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
    ]
    if secure:
        command += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
            "--enable-supernode-auth",
        ]
    else:
        command += ["--insecure"]
    if database:
        command += ["--database", database]
    return command


def supernode_command(
    *,
    superlink: str,
    node_config: Mapping[str, Any],
    runtime_port: int,
    ca_cert: Path | None,
    auth_private_key: Path | None,
    insecure: bool = False,
    poll_interval: float | None = DEFAULT_POLL_S,
    worker: bool = True,
) -> list[str]:
    """``flower-supernode`` for one merchant: TLS to the SuperLink and its own auth key.

    By default through fedseg's launcher (simulations/backends/supernode.py): one
    long-lived ClientApp process and a ``poll_interval`` poll while a run is active.
    ``worker=False, poll_interval=None`` is Flower's own process model and waits."""
    secure = require_tls(
        {"--ca-cert": ca_cert, "--auth-key": auth_private_key}, insecure=insecure, who="supernode"
    )
    launcher = []
    if worker or poll_interval is not None:
        launcher = [sys.executable, "-m", "fedseg.simulations.backends.supernode"]
        launcher += ["--poll-interval", str(poll_interval or FLOWER_POLL_S)]
        launcher += [] if worker else ["--no-worker"]
        launcher += ["--"]
    command = [
        *launcher,
        "flower-supernode",
        "--superlink",
        superlink,
        "--port",
        str(runtime_port),
        "--node-config",
        node_config_arg(node_config),
    ]
    if secure:
        command += [
            "--root-certificates",
            str(ca_cert),
            "--auth-supernode-private-key",
            str(auth_private_key),
        ]
    else:
        command += ["--insecure"]
    return command


def node_config_arg(node_config: Mapping[str, Any]) -> str:
    """Flower's ``--node-config`` syntax: space-separated ``key=value``, values in TOML."""
    parts = []
    for key, value in node_config.items():
        if not key.replace("-", "").isalnum():
            raise ValueError(f"node config key {key!r}: use letters, digits and '-'")
        if any(quote in str(value) for quote in "\"'"):
            raise ValueError(f"node config {key}: quotes cannot pass Flower's parser: {value!r}")
        parts.append(f"{key}={_toml_value(value)}")
    return " ".join(parts)


def _toml_value(value: Any) -> str:
    # tomli_w renders one scalar as the right-hand side of `x = ...`
    return tomli_w.dumps({"x": str(value) if isinstance(value, Path) else value})[4:].strip()


def connection_entry(address: str, *, ca_cert: Path | None, insecure: bool = False) -> dict:
    """One ``[superlink.<name>]`` table of ``$FLWR_HOME/config.toml`` for the ``flwr`` CLI."""
    if require_tls({"root-certificates": ca_cert}, insecure=insecure, who="flwr connection"):
        return {"address": address, "root-certificates": str(Path(ca_cert).resolve())}
    return {"address": address, "insecure": True}


def write_flwr_config(flwr_home: Path, connections: Mapping[str, dict], *, default: str) -> Path:
    """Write ``config.toml`` holding the given SuperLink connections (tests, demos)."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    path.write_text(tomli_w.dumps({"superlink": {"default": default, **connections}}))
    return path


def app_run_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every run_config key the ServerApp reads, with deployment defaults, then ``overrides``.

    ``flwr run --run-config`` may only override keys the app declares, so all are declared."""
    config = SegmentationConfig.defaults()
    config.update({"round-timeout": DEPLOY_ROUND_TIMEOUT_S, "out-dir": "fedseg-out"})
    check_keys(overrides or {}, known=config)
    for key, value in (overrides or {}).items():
        config[key] = type(config[key])(value) if not isinstance(config[key], bool) else bool(value)
    SegmentationConfig.from_run_config(config)  # fail here, not on the SuperLink
    if not math.isfinite(config["round-timeout"]) or config["round-timeout"] <= 0:
        raise ValueError("run config: deployments need a finite positive round-timeout")
    return config


def write_app_project(app_dir: str | Path, run_config: Mapping[str, Any]) -> Path:
    """Write the Flower app project ``flwr run APP_DIR`` submits: one ``pyproject.toml``."""
    app_dir = Path(app_dir)
    app_dir.mkdir(parents=True, exist_ok=True)
    project = {
        "project": {
            "name": APP_NAME,
            "version": "1.0.0",
            "description": "fedseg federated customer segmentation (code installed on each node)",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fedseg",
                    "components": {
                        "serverapp": "fedseg.server.app:app",
                        "clientapp": "fedseg.client.app:app",
                    },
                    "config": dict(run_config),
                }
            }
        },
    }
    path = app_dir / "pyproject.toml"
    path.write_text(tomli_w.dumps(project))
    return path
