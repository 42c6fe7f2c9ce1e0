"""``fedseg demo-deploy``: a real SuperLink and N real SuperNodes on 127.0.0.1, end to end.

Each merchant gets its own generated data file, HMAC pseudonym key, privacy cap, state
directory and SuperNode key pair; the operator registers the public keys, submits the
fedseg app and collects ``model.json`` and the privacy report. With ``test_seed`` every
merchant runs in deterministic test mode, so the model equals the in-process
simulation of the same federation and seed. Every process started is stopped before
``run_demo`` returns, whatever happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedseg.privacy.pseudonyms import write_key_file
from fedseg.privacy.secagg import (
    FederationRoster,
    generate_signing_key,
    load_signing_key,
    save_roster,
)
from fedseg.server.model import SegmentModel
from fedseg.simulations.data.federation import public_parameters
from fedseg.simulations.deploy.commands import app_run_config
from fedseg.simulations.deploy.local import LocalDeployment, Merchant
from fedseg.simulations.deploy.processes import DeploymentError
from fedseg.simulations.experiments.runner import default_schema_file, merchant_files


@dataclass(frozen=True)
class KillPlan:
    """Kill ``merchant_id``'s SuperNode (whole process group, SIGKILL) once it has sent
    ``after_replies`` replies: a crash mid-run."""

    merchant_id: str
    after_replies: int

    def __post_init__(self) -> None:
        if self.after_replies < 0:
            raise ValueError(f"kill plan: after_replies must be ≥ 0, got {self.after_replies}")


@dataclass(frozen=True)
class DemoResult:
    model: SegmentModel
    run_id: int
    status: str
    out_dir: Path
    node_names: dict[int, str]  # SuperLink node id → merchant id
    contributions: list[dict[str, Any]]  # per round: who contributed, who did not
    leftovers: list[int]  # pids still alive after cleanup (always empty unless a bug)
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds of each step


def demo_merchants(
    data_dir: Path, work_dir: Path, *, epsilon_cap: float, test_seed: int | None
) -> list[Merchant]:
    """One ``Merchant`` per file of ``data_dir/merchants``, each with its own key and state."""
    merchants, public_keys = [], {}
    roster = work_dir / "secagg-roster.json"
    for path in merchant_files(data_dir):
        signing = work_dir / "merchant-keys" / f"{path.stem}.ed25519"
        signing.parent.mkdir(parents=True, exist_ok=True)
        public_keys[path.stem] = (
            generate_signing_key(signing) if not signing.exists()
            else load_signing_key(signing).public_key().public_bytes_raw()
        )  # fmt: skip
        key_file = None
        if test_seed is None:
            key_file = work_dir / "merchant-keys" / f"{path.stem}.hmac"
            key_file.parent.mkdir(parents=True, exist_ok=True)
            if not key_file.exists():
                write_key_file(key_file)
        merchants.append(
            Merchant(
                merchant_id=path.stem,
                data_path=path.resolve(),
                epsilon_cap=epsilon_cap,
                state_dir=work_dir / "merchant-state" / path.stem,
                key_file=key_file,
                test_seed=test_seed,
                signing_key=signing,
                roster=roster,
            )
        )
    save_roster(roster, FederationRoster.from_keys(public_keys))  # distributed out of band
    return merchants


def run_demo(
    data_dir: str | Path,
    work_dir: str | Path,
    *,
    run_config: Mapping[str, Any] | None = None,
    epsilon_cap: float | None = None,
    test_seed: int | None = None,
    insecure: bool = False,
    kill: KillPlan | None = None,
    timeout_s: float = 900.0,
    deployment_options: Mapping[str, Any] | None = None,
) -> DemoResult:
    """Deploy the federation in ``data_dir`` locally, run fedseg once, stop everything."""
    work_dir = Path(work_dir).resolve()
    out_dir = work_dir / "out"
    overrides = {**public_parameters(data_dir), **(run_config or {}), "out-dir": str(out_dir)}
    if not overrides.get("features"):  # the operator's schema, chosen as a simulation does
        work_dir.mkdir(parents=True, exist_ok=True)
        overrides["features"] = str(default_schema_file(Path(data_dir), work_dir))
    if test_seed is not None:
        overrides["seed"] = test_seed
    config = app_run_config(overrides)
    cap = epsilon_cap if epsilon_cap is not None else float(config["epsilon"])
    merchants = demo_merchants(Path(data_dir), work_dir, epsilon_cap=cap, test_seed=test_seed)
    if config.get("secure-agg"):  # the operator's copy of the roster the merchants pinned
        config["secagg-roster"] = str(work_dir / "secagg-roster.json")
    if not config.get("expected-nodes"):  # the run is submitted while the SuperNodes start
        config["expected-nodes"] = len(merchants)
    clock = _Phases()
    with LocalDeployment(work_dir, insecure=insecure, **(deployment_options or {})) as deployment:
        deployment.start_superlink()
        clock.lap("superlink")
        for merchant in merchants:
            deployment.add_merchant(merchant)
        clock.lap("register")
        for merchant in merchants:
            deployment.start_supernode(merchant.merchant_id)
        # Submitted at once: the SuperLink starts the ServerApp while the SuperNodes start,
        # and the ServerApp waits for all of them (expected-nodes) before its first round.
        run_id = deployment.submit(config)
        clock.lap("submit")
        for merchant in merchants:
            deployment.wait_connected(merchant.merchant_id)
        clock.lap("supernodes")
        if kill is not None:
            _kill_when_due(deployment, kill)
        status = deployment.wait_for_run(run_id, out_dir, timeout_s=timeout_s)
        clock.lap("run")
        names = deployment.node_names()
    clock.lap("stop")
    leftovers = deployment.processes.leftovers()
    if not (out_dir / "model.json").exists():
        raise DeploymentError(
            f"run {run_id} ended {status} without model.json; logs in {work_dir}/logs"
        )
    model = SegmentModel.load(out_dir / "model.json")
    contributions = contributors_per_round(model.history, names)
    _write_summary(out_dir, run_id, status, names, contributions)
    return DemoResult(
        model, run_id, status, out_dir, names, contributions, leftovers, clock.seconds
    )


class _Phases:
    """Wall seconds of each step of the demo (benchmarks/deploy_speed.py reads them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self._last = now - self._last, now


def contributors_per_round(
    history: Sequence[Mapping[str, Any]], node_names: Mapping[int, str]
) -> list[dict[str, Any]]:
    """Name, for every round of the run, the merchants whose reply counted and the others."""
    everyone = sorted(node_names.values())
    rows = []
    for index, entry in enumerate(history):
        counted = sorted(node_names.get(int(n), f"node {n}") for n in entry.get("contributors", []))
        rows.append(
            {
                "round": index,
                "task": entry.get("task", "?"),
                "contributors": counted,
                "missing": [m for m in everyone if m not in counted],
            }
        )
    return rows


def render_contributions(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| round | task | contributed | missing |", "|---|---|---|---|"]
    for row in rows:
        missing = ", ".join(row["missing"]) or "-"
        lines.append(
            f"| {row['round']} | {row['task']} | {', '.join(row['contributors'])} | {missing} |"
        )
    return "\n".join(lines) + "\n"


def _kill_when_due(deployment: LocalDeployment, plan: KillPlan) -> None:
    node = deployment.nodes[plan.merchant_id]

    def replies_sent() -> int:
        return node.service.log_tail(10_000).count("Sent successfully")

    due = lambda: replies_sent() >= plan.after_replies  # noqa: E731
    deployment.wait_until(due, node.service, "kill plan", timeout_s=600.0)
    deployment.processes.kill(node.service)


def _write_summary(
    out_dir: Path, run_id: int, status: str, names: Mapping[int, str], rows: Sequence[dict]
) -> None:
    summary = {
        "run_id": run_id,
        "status": status,
        "nodes": {name: node_id for node_id, name in names.items()},
        "contributions": list(rows),
    }
    (out_dir / "deployment.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "contributors.md").write_text(render_contributions(rows))
