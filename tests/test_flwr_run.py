"""`flwr run .`, what every Flower user tries first: it works out of the box on the built-in
federation, installs and downloads nothing, leaves pyproject.toml as it was, and the test
stops the local SuperLink it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dependency_names(project: dict) -> set[str]:
    deps = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        deps += group
    names = {re.split(r"[\s\[<>=!~;@]", d, maxsplit=1)[0].lower() for d in deps}
    return names - {project["name"]}  # an extra may name fedseg's own other extras


def test_flowers_runtime_installation_is_told_to_install_none_of_our_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    excluded = {name.lower() for name in pyproject["tool"]["uv"]["exclude-dependencies"]}
    assert excluded == dependency_names(pyproject["project"])
    assert "federations" not in pyproject["tool"]["flwr"]  # the legacy table Flower rewrites


def processes_of(flwr_home: Path) -> list[int]:
    """Live processes started under this FLWR_HOME (the local SuperLink and its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"FLWR_HOME={flwr_home}".encode() in environ or str(flwr_home).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_flwr_run_in_the_project_fits_the_builtin_federation(tmp_path):
    home, out = tmp_path / "flwr-home", tmp_path / "out"
    env = {**os.environ, "FLWR_HOME": str(home), "FEDSEG_CACHE": str(tmp_path / "cache")}
    before = (ROOT / "pyproject.toml").read_bytes()
    try:
        done = subprocess.run(
            ["flwr", "run", str(ROOT), "--stream", "--run-config",
             f'k=3 rounds=2 out-dir="{out}"'],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-3000:]
        assert "No additional application dependencies needed installation." in output
        assert (out / "model.json").exists() and (out / "report.md").exists(), output[-3000:]
        assert (
            "fedseg: cluster_displacements: 2 of 2 merchants contributed" in output
        )  # logged rounds
        assert (ROOT / "pyproject.toml").read_bytes() == before
        # The operator's view afterwards: `flwr log RUN_ID --show` has every round and the model.
        run_id = re.search(r"Successfully started run (\d+)", output).group(1)
        shown = subprocess.run(
            ["flwr", "log", run_id, "--show"], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        log = shown.stdout + shown.stderr
        assert shown.returncode == 0, log[-3000:]
        assert "fedseg: describe: 2 of 2 merchants contributed, 0 left out" in log
        assert log.count("fedseg: cluster_displacements: 2 of 2 merchants contributed") >= 2, log
        assert f"fedseg: wrote {out / 'model.json'} and report.md" in log
    finally:
        for pid in processes_of(home):  # the local SuperLink outlives `flwr run`: stop it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while processes_of(home) and time.monotonic() < deadline:
            time.sleep(0.5)
    assert processes_of(home) == []
