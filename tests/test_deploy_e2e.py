"""End to end with real Flower processes on 127.0.0.1: one SuperLink, SuperNodes, TLS and
SuperNode authentication on. Slow (each ClientApp message starts a process), so few runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_blob_federation
from fedseg.server.model import SegmentModel
from fedseg.simulations.deploy.demo import KillPlan, run_demo
from fedseg.simulations.deploy.local import LocalDeployment, Merchant
from fedseg.simulations.deploy.processes import MARKER_VARIABLE, pid_alive
from fedseg.simulations.experiments.runner import simulate

pytestmark = pytest.mark.slow


def deployment_processes() -> list[int]:
    """Every live process started by any fedseg deployment (they carry the env marker)."""
    needle = f"{MARKER_VARIABLE}=".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(v.startswith(needle) for v in environ) and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind():
    before = set(deployment_processes())
    yield
    assert set(deployment_processes()) - before == set()


def test_demo_command_equals_the_simulation_of_the_same_federation_and_seed(tmp_path):
    # Prepare: `fedseg demo-deploy` in deterministic test mode with secure aggregation (real
    # signing keys and a pinned roster), keeping its files.
    done = subprocess.run(
        [sys.executable, "-m", "fedseg.simulations.cli.main", "demo-deploy", "--merchants", "3",
         "--users", "900", "--k", "3", "--epsilon", "2", "--rounds", "2", "--seed", "4",
         "--test-seed", "9", "--secure-agg", "--noise", "distributed", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished:completed; all processes stopped" in done.stdout
    deployed = SegmentModel.load(tmp_path / "deployment" / "out" / "model.json")
    # Execute: the in-process simulation over the very same merchant files.
    run_config = {"k": 3, "epsilon": 2.0, "rounds": 2, "seed": 9, "min-clients": 2,
                  "secure-agg": True, "noise": "distributed"}  # fmt: skip
    simulated = simulate(tmp_path / "federation", run_config, out_dir=tmp_path / "sim",
                         evaluate=False).model  # fmt: skip
    # Assert: same centres, same privacy accounting, every merchant in every round.
    np.testing.assert_allclose(deployed.centroids, simulated.centroids, rtol=0, atol=1e-9)
    assert deployed.privacy["epsilon"] == pytest.approx(simulated.privacy["epsilon"], rel=1e-12)
    summary = json.loads((tmp_path / "deployment" / "out" / "deployment.json").read_text())
    names = sorted(summary["nodes"])
    assert names == sorted(p.stem for p in (tmp_path / "federation" / "merchants").iterdir())
    assert all(r["contributors"] == names for r in summary["contributions"])
    assert len(summary["contributions"]) == len(simulated.history)
    for merchant in names:  # each merchant kept its own ledger on disk
        assert (tmp_path / "deployment" / "merchant-state" / merchant / "ledger.json").exists()


def test_unregistered_supernode_is_rejected_and_a_registered_one_accepted(tmp_path):
    fed = write_blob_federation(tmp_path / "fed", n=60, d=2, k=2, merchants=2, seed=1)
    merchants = [
        Merchant(f"m0{i}", fed / "merchants" / f"m0{i}.csv", 1.0, tmp_path / f"state{i}",
                 test_seed=0)
        for i in range(2)
    ]  # fmt: skip
    with LocalDeployment(tmp_path / "work") as deployment:
        deployment.start_superlink()
        deployment.add_merchant(merchants[0], register=True)
        stranger = deployment.add_merchant(merchants[1], register=False)
        deployment.start_supernode("m00")
        deployment.start_supernode("m01")
        assert deployment.wait_exit(stranger.service) != 0
        deployment.wait_connected("m00")
        assert deployment.nodes["m00"].service.running()
        listed = deployment.flwr("supernode", "ls", "fedseg-local", "--format", "json")["nodes"]
    assert "Failed to activate SuperNode" in stranger.service.log_tail(200)
    assert [int(n["node-id"]) for n in listed] == [deployment.nodes["m00"].node_id]
    assert deployment.processes.leftovers() == []


def test_supernode_killed_mid_run_drops_out_and_the_report_says_when(tmp_path):
    fed = write_blob_federation(tmp_path / "fed", n=1200, d=3, k=3, merchants=3, seed=2)
    # Each round after the crash waits round-timeout for m01, so keep rounds few.
    run_config = {"k": 3, "epsilon": 2.0, "rounds": 1, "init-rounds": 1, "min-clients": 2,
                  "round-timeout": 30.0}  # fmt: skip
    # m01 dies (SIGKILL of its whole process group) after describe, plan, feature ranges.
    result = run_demo(fed, tmp_path / "work", run_config=run_config, kill=KillPlan("m01", 3))
    assert result.status == "finished:completed"
    assert result.leftovers == []
    rows = result.contributions
    crash = next(i for i, r in enumerate(rows) if r["task"] == "feature_ranges")
    assert all(r["contributors"] == ["m00", "m01", "m02"] for r in rows[: crash + 1])
    after = rows[crash + 1 :]
    assert len(after) >= 3  # moments, initialization and at least one Lloyd round
    assert all(r["contributors"] == ["m00", "m02"] and r["missing"] == ["m01"] for r in after)
    dead_id = str(next(i for i, name in result.node_names.items() if name == "m01"))
    assert all(dead_id in h.get("rejected", {}) for h in result.model.history[crash + 1 :])
    table = (result.out_dir / "contributors.md").read_text()
    assert f"| {crash + 1} | feature_moments | m00, m02 | m01 |" in table


def test_demo_stopped_by_sigterm_midway_leaves_no_process(tmp_path):
    before = set(deployment_processes())
    demo = subprocess.Popen(
        [sys.executable, "-m", "fedseg.simulations.cli.main", "demo-deploy", "--merchants", "2",
         "--users", "300", "--out", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # SuperLink + its SuperExec + two SuperNodes (their ClientApps are threads) are up;
        # the ServerApp comes later. Collect every process seen.
        started: set[int] = set()
        while len(started) < 4 and time.monotonic() < deadline:
            assert demo.poll() is None, demo.stderr.read()
            started |= set(deployment_processes()) - before
            time.sleep(0.2)
        assert len(started) >= 4
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 143
    finally:
        if demo.poll() is None:  # a failed assertion above: still let the demo clean up
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    assert not [pid for pid in started if pid_alive(pid)]
