"""Deployment commands of the `fedseg` CLI: keys, certificates, SuperLink, SuperNode, demo.

``register_deploy_commands(app)`` adds them to the main Typer app. ``superlink`` and
``supernode`` start Flower's own processes with fedseg's safe defaults (TLS, SuperNode
authentication, no runtime installs) and refuse to start without TLS unless
``--insecure`` is given; ``--dry-run`` prints the command instead.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from fedseg.simulations.deploy.commands import (
    DEFAULT_POLL_S,
    DEPLOY_ROUND_TIMEOUT_S,
    SUPERLINK_ENV,
    app_run_config,
    require_tls,
    superlink_command,
    supernode_command,
    write_app_project,
)
from fedseg.simulations.deploy.pki import TlsFiles, write_node_keypair, write_tls_certificates
from fedseg.simulations.deploy.processes import flower_executable, free_port

Opt = typer.Option
INSECURE_HELP = "Run without TLS and SuperNode authentication (local tests only)"


def keygen(out: Annotated[Path, Opt(help="Key file to create (refuses to overwrite)")]) -> None:
    """Create your secret HMAC pseudonym key (owner-readable only; keep it)."""
    from fedseg.privacy.pseudonyms import write_key_file

    if out.exists():
        raise ValueError(f"{out}: exists already; a new key would change every pseudonym")
    write_key_file(out)
    typer.echo(f"wrote pseudonym key {out}")


def certs(
    out: Annotated[Path, Opt(help="Directory for ca.crt, server.crt/.key (and node keys)")],
    host: Annotated[list[str] | None, Opt(help="Address merchants dial (repeat)")] = None,
    supernode: Annotated[list[str] | None, Opt(help="Also make key pair NAME.key/.pub")] = None,
) -> None:
    """Trial CA and TLS certificates, and SuperNode keys (not for production)."""
    tls = write_tls_certificates(out, hosts=host or ["127.0.0.1", "localhost"])
    typer.echo(f"wrote {tls.ca_cert}, {tls.server_cert}, {tls.server_key} (CA key: {tls.ca_key})")
    for name in supernode or []:
        keys = write_node_keypair(out / "supernodes", name)
        typer.echo(f"wrote SuperNode key pair {keys.private_key}, {keys.public_key}")
    typer.echo("trial certificates: not for production (see docs/operator.md)", err=True)


def secagg_key(
    out: Annotated[Path, Opt(help="Private key file to create (refuses to overwrite)")],
) -> None:
    """Your signing key for secure aggregation (its public key goes to the operator).

    Keep the file; the printed public key goes into the federation's roster."""
    from fedseg.privacy.secagg import generate_signing_key

    if out.exists():
        raise ValueError(f"{out}: exists already; a new key would need a new roster entry")
    public = generate_signing_key(out)
    typer.echo(f"wrote {out} (keep it); public key for the roster: {public.hex()}")


def roster(
    out: Annotated[Path, Opt(help="Roster file to write")],
    merchant: Annotated[list[str], Opt(help="NAME=PUBLIC_KEY_HEX of one merchant (repeat)")],
) -> None:
    """The federation's roster of merchants' signing keys, for secure aggregation.

    Every merchant must get this file from a channel the operator cannot tamper with (it is
    what stops a server inventing merchants), and pins it in its node config
    (`secagg-roster`)."""
    from fedseg.privacy.secagg import FederationRoster, save_roster

    keys = {}
    for entry in merchant:
        name, _, key = entry.partition("=")
        try:
            keys[name.strip()] = bytes.fromhex(key.strip())
        except ValueError:
            raise ValueError(f"--merchant {name!r}: the public key is not hex") from None
    save_roster(out, FederationRoster.from_keys(keys))
    typer.echo(f"wrote {out}: {len(keys)} merchants")


def supernode_key(
    out: Annotated[Path, Opt(help="Directory for NAME.key and NAME.pub")],
    name: Annotated[str, Opt(help="File name stem, e.g. your merchant id")],
) -> None:
    """Your SuperNode key pair: keep NAME.key, send NAME.pub to the operator."""
    keys = write_node_keypair(out, name)
    typer.echo(f"wrote {keys.private_key} (keep) and {keys.public_key} (send to the operator)")


def app_project(
    out: Annotated[Path, Opt(help="Directory of the app project to pass to `flwr run`")],
    model_dir: Annotated[Path, Opt(help="Where the ServerApp writes model.json, report.md")],
    k: Annotated[int, Opt(help="Number of segments")] = 5,
    epsilon: Annotated[float, Opt(help="Total user-level ε of the run")] = 1.0,
    delta: Annotated[float, Opt(help="δ of the run")] = 1e-6,
    rounds: Annotated[int, Opt(help="DP Lloyd rounds")] = 2,
    min_clients: Annotated[int, Opt(help="Fewest merchants a round may aggregate")] = 2,
    round_timeout: Annotated[float, Opt(help="Seconds a round waits")] = DEPLOY_ROUND_TIMEOUT_S,
) -> None:
    """Write the Flower app project (pyproject.toml only) for `flwr run`."""
    config = app_run_config(
        {
            "k": k, "epsilon": epsilon, "delta": delta, "rounds": rounds,
            "min-clients": min_clients, "round-timeout": round_timeout,
            "out-dir": str(model_dir.resolve()),
        }
    )  # fmt: skip
    path = write_app_project(out, config)
    typer.echo(f"wrote {path}; submit with: flwr run {out} <connection> [--run-config 'k=8']")


def superlink(
    certs: Annotated[Path | None, Opt(help="Directory with ca.crt, server.crt, server.key")] = None,
    host: Annotated[str, Opt(help="Interface to listen on (0.0.0.0: all)")] = "0.0.0.0",
    port: Annotated[int, Opt(help="Port of the SuperLink (Fleet, Control, Runtime APIs)")] = 9093,
    database: Annotated[str | None, Opt(help="SQLite file keeping registrations")] = None,
    insecure: Annotated[bool, Opt("--insecure", help=INSECURE_HELP)] = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="Print the command only")] = False,
) -> None:
    """Start the flower-superlink: TLS, SuperNode authentication, no installs."""
    tls = None
    if certs is not None:
        tls = TlsFiles(
            certs / "ca.crt", certs / "ca.key", certs / "server.crt", certs / "server.key"
        )
    command = superlink_command(port=port, host=host, tls=tls, insecure=insecure, database=database)
    os.environ.update({k: v for k, v in SUPERLINK_ENV.items() if k not in os.environ})
    _launch(command, insecure=insecure, dry_run=dry_run)


def supernode(
    superlink: Annotated[str, Opt(help="SuperLink address HOST:PORT")],
    data: Annotated[str, Opt(help="Your data: .csv, .parquet, .db or sqlite:///db?table=events")],
    key_file: Annotated[Path, Opt(help="Your HMAC pseudonym key (fedseg keygen)")],
    epsilon_cap: Annotated[float, Opt(help="Most ε your customers may ever be charged")],
    state_dir: Annotated[Path, Opt(help="Keeps your privacy ledger across runs")],
    ca_cert: Annotated[Path | None, Opt(help="CA certificate of the SuperLink")] = None,
    auth_key: Annotated[Path | None, Opt(help="Your SuperNode private key")] = None,
    merchant_id: Annotated[str | None, Opt(help="Your name in logs (default: data stem)")] = None,
    signing_key: Annotated[
        Path | None, Opt(help="Your secure-aggregation signing key (fedseg secagg-key)")
    ] = None,
    secagg_roster: Annotated[
        Path | None, Opt(help="The federation's roster, pinned (secure aggregation)")
    ] = None,
    runtime_port: Annotated[int, Opt(help="Local port of the SuperNode (0: any)")] = 0,
    poll_interval: Annotated[
        float, Opt(help="Seconds between asks for work while a run is active (Flower: 3)")
    ] = DEFAULT_POLL_S,
    process_per_message: Annotated[
        bool, Opt("--process-per-message", help="Flower's own: a ClientApp process per message")
    ] = False,
    strict: Annotated[
        bool, Opt("--strict", help="Refuse a table with any bad row (e.g. an unknown event name)")
    ] = False,
    insecure: Annotated[bool, Opt("--insecure", help=INSECURE_HELP)] = False,
    dry_run: Annotated[
        bool, Opt("--dry-run", help="Check everything, print the command only")
    ] = False,
) -> None:
    """Start your flower-supernode with the fedseg ClientApp (inputs checked first).

    Data, key, cap, state directory, certificates and roster are all read before the
    SuperNode starts; the first problem stops it with one line naming the option."""
    from fedseg.simulations.deploy.preflight import check_merchant_inputs

    if (signing_key is None) != (secagg_roster is None):
        raise ValueError("secure aggregation needs both --signing-key and --secagg-roster")
    if not insecure:  # supernode_command warns about insecure mode itself
        require_tls({"--ca-cert": ca_cert, "--auth-key": auth_key}, insecure=False, who="supernode")
    report = check_merchant_inputs(
        data=data, key_file=key_file, epsilon_cap=epsilon_cap, state_dir=state_dir,
        strict=strict, signing_key=signing_key, secagg_roster=secagg_roster,
    )  # fmt: skip
    typer.echo(report.summary(), err=True)
    node_config = {
        "data-path": data if "://" in data else str(Path(data).resolve()),
        "merchant-id": merchant_id or Path(data.split("?")[0]).stem,
        "key-file": str(key_file.resolve()),
        "epsilon-cap": float(epsilon_cap),
        "state-dir": str(state_dir.resolve()),
    }
    if strict:
        node_config["strict"] = True
    if signing_key is not None:
        node_config["signing-key"] = str(signing_key.resolve())
        node_config["secagg-roster"] = str(secagg_roster.resolve())
    command = supernode_command(
        superlink=superlink, node_config=node_config, runtime_port=runtime_port or free_port(),
        ca_cert=ca_cert, auth_private_key=auth_key, insecure=insecure,
        poll_interval=None if process_per_message else poll_interval,
        worker=not process_per_message,
    )  # fmt: skip
    _launch(command, insecure=insecure, dry_run=dry_run)


def demo_deploy(
    merchants: Annotated[int, Opt(help="Merchants, one SuperNode each")] = 3,
    users: Annotated[int, Opt(help="Customers in total")] = 3000,
    k: Annotated[int, Opt(help="Number of segments")] = 4,
    epsilon: Annotated[float, Opt(help="Total user-level ε of the run")] = 2.0,
    rounds: Annotated[int, Opt(help="DP Lloyd rounds")] = 2,
    seed: Annotated[int, Opt(help="Seed of the generated data")] = 0,
    test_seed: Annotated[int | None, Opt(help="Deterministic test mode (tests only)")] = None,
    secure_agg: Annotated[bool, Opt("--secure-agg", help="Secure aggregation")] = False,
    noise: Annotated[str, Opt(help="local or distributed (with --secure-agg)")] = "local",
    out: Annotated[Path | None, Opt(help="Keep everything here (default: a temp dir)")] = None,
    insecure: Annotated[bool, Opt("--insecure", help=INSECURE_HELP)] = False,
) -> None:
    """A real SuperLink and SuperNodes on 127.0.0.1, one run end to end."""
    from fedseg.server.report import render_report
    from fedseg.simulations.data.federation import write_federation
    from fedseg.simulations.data.synthetic import generate_federation
    from fedseg.simulations.deploy.demo import render_contributions, run_demo

    if insecure:
        typer.echo("WARNING: --insecure: no TLS, no SuperNode authentication", err=True)
    # SIGTERM unwinds like Ctrl-C, so the deployment's cleanup runs and no process is left.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="fedseg-demo-") as scratch:
        work = out or Path(scratch)
        fed = generate_federation(users=users, merchants=merchants, segments=k, seed=seed)
        data_dir = write_federation(fed, work / "federation")
        typer.echo(f"starting a SuperLink and {merchants} SuperNodes under {work} …", err=True)
        result = run_demo(
            data_dir, work / "deployment", insecure=insecure, test_seed=test_seed,
            run_config={"k": k, "epsilon": epsilon, "rounds": rounds, "min-clients": 2,
                        "secure-agg": secure_agg, "noise": noise},
        )  # fmt: skip
        typer.echo(render_report(result.model))
        typer.echo(render_contributions(result.contributions))
        typer.echo(f"run {result.run_id}: {result.status}; all processes stopped")
        if out is not None:
            typer.echo(f"model: {result.out_dir / 'model.json'}")


def contributors(
    model: Annotated[Path, Opt(help="model.json written by the ServerApp")],
    nodes: Annotated[Path | None, Opt(help='JSON {"merchant": node_id} from registration')] = None,
) -> None:
    """Which merchant contributed to which round (model.json's history)."""
    import json

    from fedseg.simulations.deploy.demo import contributors_per_round, render_contributions

    history = json.loads(model.read_text()).get("history", [])
    named = json.loads(nodes.read_text()) if nodes else {}
    names = {int(node_id): name for name, node_id in named.items()}
    for entry in history:  # unnamed nodes keep their id
        for node_id in entry.get("contributors", []):
            names.setdefault(int(node_id), f"node {node_id}")
    typer.echo(render_contributions(contributors_per_round(history, names)))


def _launch(command: list[str], *, insecure: bool, dry_run: bool) -> None:
    if insecure:
        typer.echo("WARNING: --insecure: no TLS, no SuperNode authentication", err=True)
    if dry_run:
        typer.echo(shlex.join(command))
        return
    executable = flower_executable(command[0])
    os.execv(executable, [executable, *command[1:]])


def register_deploy_commands(app: typer.Typer, *, merchant: str, operator: str) -> None:
    """Add the deployment commands to ``app``, under the merchants' and operators' panels."""
    for name, command in (
        ("keygen", keygen), ("supernode-key", supernode_key), ("secagg-key", secagg_key),
        ("supernode", supernode),
    ):  # fmt: skip
        app.command(name, rich_help_panel=merchant)(command)
    for name, command in (
        ("certs", certs), ("roster", roster), ("app", app_project), ("superlink", superlink),
        ("demo-deploy", demo_deploy), ("contributors", contributors),
    ):  # fmt: skip
        app.command(name, rich_help_panel=operator)(command)
