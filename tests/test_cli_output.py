"""What `fedseg` prints for people and for scripts, through the real entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from importlib.metadata import version

import pandas as pd
import pytest

from tests.conftest import write_blob_federation

FEDSEG = [sys.executable, "-m", "fedseg.simulations.cli.main"]


def fedseg(*args: str, columns: int = 100) -> subprocess.CompletedProcess:
    env = {"COLUMNS": str(columns), "PATH": "/usr/bin:/bin"}
    return subprocess.run([*FEDSEG, *args], capture_output=True, text=True, timeout=300, env=env)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return write_blob_federation(
        tmp_path_factory.mktemp("cli") / "fed", n=900, d=3, k=3, merchants=3, seed=2
    )


@pytest.fixture(scope="module")
def simulated(federation, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    done = fedseg("simulate", "--data", str(federation), "--k", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return done, out


def test_simulate_prints_tables_people_read_and_no_json(simulated):
    done, out = simulated
    assert "3 segments" in done.stdout and "customers" in done.stdout
    for figure in ("ε spent", "ARI / NMI", "k-means cost ratio", "Privacy: what was released"):
        assert figure in done.stdout
    assert "cluster_displacements" in done.stdout  # the privacy report's releases
    assert f"wrote {out / 'model.json'}" in done.stdout
    assert "{" not in done.stdout  # no JSON dump without --json
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    # What loading kept and dropped, per merchant, on stderr.
    assert "Merchant data" in done.stderr and "m00" in done.stderr and "300" in done.stderr


def test_json_flag_prints_metrics_json_only(federation, tmp_path):
    done = fedseg("simulate", "--data", str(federation), "--k", "3", "--json",
                  "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert printed == json.loads((tmp_path / "metrics.json").read_text())
    for key in ("epsilon_spent", "delta", "n_users", "n_merchants", "rounds", "wall_s", "ari",
                "nmi", "cost_ratio", "cost_ratio_model_space"):  # fmt: skip
        assert key in printed  # docs/contract.md
    assert printed["n_users"] == 900


def test_version_comes_from_the_installed_package():
    done = fedseg("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"fedseg {version('fedseg')}"


def test_top_level_help_lists_every_command_on_one_line():
    from fedseg.simulations.cli.main import app
    from typer.main import get_command

    done = fedseg("--help", columns=100)
    assert done.returncode == 0
    names = sorted(get_command(app).commands)
    rows = [line.strip("│ ") for line in done.stdout.splitlines() if line.startswith("│")]
    starts = [row.split(" ")[0] for row in rows]
    assert sorted(s for s in starts if not s.startswith("--")) == names  # no wrapped lines
    for row, name in zip(rows, starts, strict=True):
        assert len(row) > len(name) + 5, f"{name} has no description"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--k", "50000"], "--k 50000"),
        (["--k", "1"], "--k"),
        (["--epsilon", "abc"], "--epsilon"),
        (["--epsilon-cap", "0"], "--epsilon-cap"),
    ],
)
def test_mistakes_are_one_line_naming_the_flag_before_any_work(federation, tmp_path, args, needle):
    started = time.perf_counter()
    done = fedseg("simulate", "--data", str(federation), *args, "--out", str(tmp_path))
    assert time.perf_counter() - started < 60
    assert done.returncode == 2
    [line] = error_lines(done)
    assert line.startswith("fedseg: error: ") and needle in line, done.stderr
    assert not (tmp_path / "model.json").exists()


def test_unknown_dataset_fails_before_preparing_anything():
    done = fedseg("simulate", "--dataset", "foo")
    assert done.returncode == 2
    assert error_lines(done) == [
        "fedseg: error: --dataset: unknown dataset 'foo'; choose one of synthetic, cdnow, ml-100k"
    ]


def test_three_customers_run_without_raw_warnings(tmp_path):
    data = write_blob_federation(tmp_path / "fed", n=3, d=2, k=2, merchants=3, seed=0)
    done = fedseg("simulate", "--data", str(data), "--k", "3", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr
    too_many = fedseg("simulate", "--data", str(data), "--k", "4", "--out", str(tmp_path / "o"))
    assert too_many.returncode == 2
    assert "only 3 customers" in error_lines(too_many)[-1]


def test_a_truth_file_missing_customers_is_named_with_the_count(tmp_path):
    data = write_blob_federation(tmp_path / "fed", n=300, d=2, k=2, merchants=2, seed=1)
    truth = pd.read_csv(data / "truth.csv")
    truth.iloc[7:].to_csv(data / "truth.csv", index=False)  # 7 customers unlisted
    done = fedseg("simulate", "--data", str(data), "--k", "2", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    notice = [line for line in done.stderr.splitlines() if "truth.csv" in line]
    assert notice and str(data / "truth.csv") in notice[0]
    assert re.search(r"\b7 of 300 customers\b", notice[0]), notice
    truth.drop(columns=["segment"]).to_csv(data / "truth.csv", index=False)
    broken = fedseg("simulate", "--data", str(data), "--k", "2", "--out", str(tmp_path / "o"))
    assert broken.returncode == 2
    assert error_lines(broken)[-1] == (
        f"fedseg: error: {data / 'truth.csv'}: no column 'segment' "
        "(needs merchant_id, user_id, segment)"
    )
