"""`fedseg sweep` through the real entry point: the real cause up front, a readable table."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import write_blob_federation

FEDSEG = [sys.executable, "-m", "fedseg.simulations.cli.main"]


def fedseg(*args: str) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "100", "PATH": "/usr/bin:/bin"}
    return subprocess.run([*FEDSEG, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return write_blob_federation(root / "fed", n=600, d=2, k=2, merchants=2, seed=3)


def test_a_folder_without_merchants_is_named_not_a_singular_matrix(tmp_path):
    (tmp_path / "nomerchants").mkdir()
    done = fedseg("sweep", "--data", str(tmp_path / "nomerchants"), "--epsilons", "1",
                  "--seeds", "1", "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"fedseg: error: {tmp_path / 'nomerchants'}: no merchants/*.csv, *.parquet or SQLite *.db files"
    ]


def test_k_beyond_the_federation_fails_before_any_run(federation, tmp_path):
    done = fedseg("sweep", "--data", str(federation), "--k", "601", "--epsilons", "1",
                  "--seeds", "1", "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 2
    assert "--k 601" in done.stderr.strip().splitlines()[-1] and "600 customers" in done.stderr
    assert not (tmp_path / "out" / "results.csv").exists()


def test_when_every_run_fails_the_first_error_is_the_one_line(federation, tmp_path):
    done = fedseg("sweep", "--data", str(federation), "--k", "2", "--dropout", "0.9999",
                  "--epsilons", "1", "--seeds", "1", "--workers", "0", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fedseg: error: all 1 runs failed; the first: RoundFailed: ")
    assert "Singular" not in done.stderr and "Traceback" not in done.stderr
    error = pd.read_csv(tmp_path / "results.csv")["error"].iloc[0]
    assert error in last


def test_the_sweep_prints_a_table_and_json_on_request(federation, tmp_path):
    args = ["sweep", "--data", str(federation), "--k", "2", "--epsilons", "1,inf", "--seeds", "1",
            "--workers", "0", "--out", str(tmp_path)]  # fmt: skip
    done = fedseg(*args)
    assert done.returncode == 0, done.stderr
    assert "Median over seeds" in done.stdout and "cost ratio" in done.stdout
    assert "ARI" in done.stdout and "∞" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    again = fedseg(*args, "--json")  # resumed: nothing is rerun, the same medians
    records = json.loads(again.stdout)
    assert [r["epsilon"] for r in records] == [1.0, "inf"]
    assert {"setting", "epsilon", "runs", "ari", "cost_ratio_model_space"} <= set(records[0])
