"""The command line as merchants and researchers use it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

FEDSEG = [sys.executable, "-m", "fedseg.simulations.cli.main"]


def fedseg(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*FEDSEG, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["simulate", "--data", "/no/such/dir"], "/no/such/dir"),
        (["simulate", "--epsilon", "-1"], "--epsilon"),
        (["simulate", "--noise", "distributed"], "secure"),
        (["simulate", "--workers", "-1"], "--workers"),
        (["assign", "--model", "/no/model.json", "--data", "/no/data.csv"], "/no/model.json"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, needle):
    result = fedseg(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_simulate_then_assign_and_warm_start_with_accumulating_ledgers(tmp_path):
    data = tmp_path / "fed"
    assert (
        fedseg("generate", "--out", str(data), "--users", "4000", "--merchants", "3").returncode
        == 0
    )
    state = tmp_path / "state"
    first = fedseg("simulate", "--data", str(data), "--k", "4", "--out", str(tmp_path / "a"),
                   "--state-dir", str(state), "--epsilon-cap", "3")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "4 segments" in first.stdout and "ε spent" in first.stdout
    ledger = json.loads((state / "m0" / "ledger.json").read_text())
    spent_once = len(ledger["releases"])

    # The merchant labels its own customers, keeping its own ids.
    merchant_file = next((data / "merchants").iterdir())
    out = tmp_path / "labels.csv"
    assigned = fedseg("assign", "--model", str(tmp_path / "a" / "model.json"), "--data", str(merchant_file),
                      "--out", str(out))  # fmt: skip
    assert assigned.returncode == 0, assigned.stderr
    labels = pd.read_csv(out)
    own_ids = set(pd.read_csv(merchant_file)["user_id"].astype(str))
    assert set(labels["user_id"].astype(str)) == own_ids
    assert labels["segment"].between(1, 4).all()

    # Feedback loop: warm start keeps segment numbering; ledgers keep accumulating.
    second = fedseg("simulate", "--data", str(data), "--k", "4", "--out", str(tmp_path / "b"),
                    "--state-dir", str(state), "--epsilon-cap", "3",
                    "--warm-start", str(tmp_path / "a" / "model.json"))  # fmt: skip
    assert second.returncode == 0, second.stderr
    a = json.loads((tmp_path / "a" / "model.json").read_text())["centroids_standardized"]
    b = json.loads((tmp_path / "b" / "model.json").read_text())["centroids_standardized"]
    nearest = [
        min(range(4), key=lambda j: sum((x - y) ** 2 for x, y in zip(ca, b[j], strict=True)))
        for ca in a
    ]
    assert nearest == [0, 1, 2, 3]
    ledger = json.loads((state / "m0" / "ledger.json").read_text())
    assert len(ledger["releases"]) > spent_once

    # A third run fits the cap on its own but not on top of what was spent: refused.
    from fedseg.privacy.ledger import PrivacyLedger

    spent = PrivacyLedger(state / "m0" / "ledger.json", epsilon_cap=3, delta=1e-6).spent()
    assert 1.0 < spent < 2.0  # two ε=1 runs compose to less than 2
    third = fedseg("simulate", "--data", str(data), "--k", "4", "--out", str(tmp_path / "c"),
                   "--state-dir", str(state), "--epsilon-cap", "3", "--epsilon", "2.9")  # fmt: skip
    assert third.returncode == 2 and "budget" in third.stderr.lower()
    assert not (tmp_path / "c" / "model.json").exists()
    # Refused as a whole, before its first release: nothing more was spent.
    assert PrivacyLedger(state / "m0" / "ledger.json", epsilon_cap=3, delta=1e-6).spent() == spent


@pytest.mark.slow
def test_a_deleted_ledger_is_refused_until_reset_on_purpose(tmp_path):
    """Issue 15: deleting ledger.json silently reset a merchant's spent budget. A state
    directory that has served a run refuses to go on without it; ``fedseg ledger reset``
    asks for ``--yes`` and says what it did."""
    from fedseg.privacy.accounting import Release
    from fedseg.privacy.ledger import PrivacyLedger

    state = tmp_path / "m0"
    PrivacyLedger(state / "ledger.json", epsilon_cap=3, delta=1e-6).charge(Release("x", 5.0))
    (state / "ledger.json").unlink()
    shown = fedseg("ledger", "show", "--state-dir", str(state))
    assert shown.returncode == 2 and "fedseg ledger reset --state-dir" in shown.stderr
    unconfirmed = fedseg("ledger", "reset", "--state-dir", str(state))
    assert unconfirmed.returncode == 2 and "add --yes to confirm" in unconfirmed.stderr
    reset = fedseg("ledger", "reset", "--state-dir", str(state), "--yes")
    assert reset.returncode == 0 and "no ledger; mark cleared" in reset.stdout
    assert PrivacyLedger(state / "ledger.json", epsilon_cap=3, delta=1e-6).spent() == 0.0
