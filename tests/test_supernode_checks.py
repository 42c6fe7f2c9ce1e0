"""`fedseg supernode` reads every input before Flower's SuperNode starts: one line naming the
option (and the file), never a failure at the first run."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from fedseg.privacy.pseudonyms import write_key_file

FEDSEG = [sys.executable, "-m", "fedseg.simulations.cli.main"]
EVENTS = pd.DataFrame(
    {
        "user_id": ["a", "a", "b", "c"],
        "timestamp": ["2024-01-02", "2024-02-03", "2024-03-04", "2024-03-05"],
        "event": ["view", "purchase", "order", "refund"],
        "item_id": ["i1", "i1", "i2", "i3"],
        "price": ["", "10", "20", "5"],
    }
)


@pytest.fixture
def merchant(tmp_path):
    EVENTS.to_csv(tmp_path / "shop.csv", index=False)
    write_key_file(tmp_path / "shop.key")
    return tmp_path


def supernode(cwd, *changes: str, insecure: bool = True) -> subprocess.CompletedProcess:
    args = {"--data": "shop.csv", "--key-file": "shop.key", "--epsilon-cap": "3",
            "--state-dir": "state"}  # fmt: skip
    flags = []
    for change in changes:
        option, _, value = change.partition("=")
        if value:
            args[option] = value
        elif option in args:
            del args[option]
        else:
            flags.append(option)
    command = [*FEDSEG, "supernode", "--superlink", "127.0.0.1:1"]
    command += [part for pair in args.items() for part in pair] + flags
    command += ["--insecure"] if insecure else []
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)


def last_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (["--data"], "Missing option '--data'"),
        (["--data=missing.csv"], "fedseg: error: --data: missing.csv: file not found"),
        (["--key-file=none.key"], "fedseg: error: --key-file: none.key: pseudonym key file not found"),
        (["--epsilon-cap=0"], "fedseg: error: --epsilon-cap: merchant policy: 'epsilon-cap' must be > 0"),
        (["--signing-key=sign.pem", "--secagg-roster=roster.json"], "fedseg: error: --signing-key: sign.pem: no such file"),
        (["--strict"], "fedseg: error: --data: shop.csv: strict mode: 1 bad rows: 1 unknown event (first at row 4)"),
    ],
)  # fmt: skip
def test_a_bad_input_stops_the_supernode_at_start_naming_the_option(merchant, changes, expected):
    assert expected in last_line(supernode(merchant, *changes))


def test_missing_certificates_name_the_option_and_the_path(merchant):
    line = last_line(supernode(merchant, "--ca-cert=certs/ca.crt", insecure=False))
    assert "--ca-cert certs/ca.crt: no such file; --auth-key not given" in line


def test_good_inputs_show_the_load_report_then_the_command(merchant):
    done = supernode(merchant, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "shop.csv: events table, 4 rows read, 3 kept, 1 dropped, 2 customers" in done.stderr
    assert "1 unknown event (first at row 4)" in done.stderr
    assert "event names read as: order → purchase" in done.stderr
    # Flower's command line, behind fedseg's launcher (one long-lived ClientApp, short polls)
    assert " -m fedseg.simulations.backends.supernode " in done.stdout
    assert " -- flower-supernode --superlink 127.0.0.1:1 " in done.stdout
    assert (merchant / "state").is_dir()  # the ledger's directory was made and checked
