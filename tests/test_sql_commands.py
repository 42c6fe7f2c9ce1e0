"""SQL sources through every command that loads data, run as the real commands: a federation
of SQLite files simulates exactly as its CSVs do, a SuperNode gets its URL unchanged, and a
URL carrying a password is refused without the password appearing anywhere."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fedseg.privacy.protocol.builtin import numeric_table_schema
from fedseg.privacy.pseudonyms import write_key_file
from fedseg.privacy.published.identity import stamp

FEDSEG = [sys.executable, "-m", "fedseg.simulations.cli.main"]
SECRET = "s3cr3t-pa55"
EVENTS = pd.DataFrame(
    {
        "user_id": ["a", "a", "b", "c"],
        "timestamp": ["2024-01-02", "2024-02-03", "2024-03-04", "2024-03-05"],
        "event": ["view", "purchase", "purchase", "cart"],
        "item_id": ["i1", "i1", "i2", "i3"],
        "price": ["", "10", "20", "5"],
    }
)


def fedseg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FEDSEG, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def to_sqlite(table: pd.DataFrame, path: Path, name: str = "events") -> Path:
    with sqlite3.connect(path) as connection:
        table.to_sql(name, connection, index=False)
    connection.close()
    return path


@pytest.fixture
def shop(tmp_path) -> Path:
    write_key_file(tmp_path / "shop.key")
    return to_sqlite(EVENTS, tmp_path / "shop.db")


def supernode(cwd: Path, data: str) -> subprocess.CompletedProcess:
    return fedseg("supernode", "--superlink", "127.0.0.1:1", "--data", data, "--key-file",
                  "shop.key", "--epsilon-cap", "3", "--state-dir", "state", "--insecure",
                  "--dry-run", cwd=cwd)  # fmt: skip


def test_supernode_reads_a_sqlite_url_and_hands_it_on_unchanged(shop):
    url = f"sqlite:///{shop}?table=events"  # four slashes: an absolute path
    done = supernode(shop.parent, url)
    assert done.returncode == 0, done.stderr
    assert f"{url}: events table, 4 rows read, 4 kept" in done.stderr
    assert f'data-path="{url}"' in done.stdout
    assert 'merchant-id="shop"' in done.stdout


def test_supernode_reads_a_sqlite_file_given_as_a_path(shop):
    done = supernode(shop.parent, "shop.db")
    assert done.returncode == 0, done.stderr
    assert "shop.db: events table, 4 rows read, 4 kept" in done.stderr
    assert f'data-path="{shop}"' in done.stdout


def test_a_password_in_a_supernode_url_is_refused_and_never_printed(shop):
    done = supernode(shop.parent, f"postgresql://shop:{SECRET}@127.0.0.1:1/sales?table=events")
    assert done.returncode == 2
    assert SECRET not in done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fedseg: error: --data: postgresql://shop:***@127.0.0.1:1/sales")
    assert "PGPASSWORD or in a file named by ?password-file=PATH" in last


def test_assign_names_the_table_to_pick_in_a_database_of_several(tmp_path):
    db = to_sqlite(EVENTS, tmp_path / "two.db", "orders")
    to_sqlite(EVENTS, db, "returns")
    scaler = {"names": ["f0"], "log": [False], "lower": [0.0], "upper": [1.0], "mean": [0.5],
              "scale": [0.5]}  # fmt: skip
    model = {"scaler": scaler, "centroids_standardized": [[-1.0], [1.0]]}
    schema = numeric_table_schema(["f0"])
    model |= stamp(run_id="test") | {"schema": schema.to_dict(), "schema_digest": schema.digest()}
    (tmp_path / "model.json").write_text(json.dumps(model))
    done = fedseg("assign", "--model", str(tmp_path / "model.json"), "--data", str(db),
                  "--out", str(tmp_path / "labels.csv"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"which table? (tables: orders, returns); name one as sqlite:///{db}?table=NAME" in last


@pytest.mark.slow
def test_a_federation_of_sqlite_files_simulates_as_its_csv_files_and_assigns(tmp_path):
    csv_dir, sql_dir = tmp_path / "csv", tmp_path / "sql"
    made = fedseg("generate", "--out", str(csv_dir), "--users", "900", "--merchants", "2",
                  "--segments", "3", "--seed", "1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    (sql_dir / "merchants").mkdir(parents=True)
    for extra in csv_dir.iterdir():
        if extra.is_file():  # items.csv, truth.csv, federation.toml
            (sql_dir / extra.name).write_bytes(extra.read_bytes())
    for merchant in sorted((csv_dir / "merchants").glob("*.csv")):
        to_sqlite(pd.read_csv(merchant, dtype=str), sql_dir / "merchants" / f"{merchant.stem}.db")
    models = {}
    for name, data in (("csv", csv_dir), ("sql", sql_dir)):
        done = fedseg("simulate", "--data", str(data), "--k", "3", "--rounds", "2", "--epsilon",
                      "2", "--seed", "0", "--out", str(tmp_path / f"out-{name}"))  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Merchant data" in done.stderr and "│ m0 " in done.stderr  # its load report
        models[name] = json.loads((tmp_path / f"out-{name}" / "model.json").read_text())
    assert models["sql"]["centroids"] == models["csv"]["centroids"]
    assert models["sql"]["segment_sizes"] == models["csv"]["segment_sizes"]
    merchant = sorted((sql_dir / "merchants").glob("*.db"))[0]
    out = tmp_path / "labels.csv"
    done = fedseg("assign", "--model", str(tmp_path / "out-sql" / "model.json"), "--data",
                  f"sqlite:///{merchant}?table=events", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(pd.read_csv(out)) > 0


def test_simulate_strict_refuses_an_unknown_event_name_before_any_release(tmp_path):
    (tmp_path / "fed" / "merchants").mkdir(parents=True)
    EVENTS.to_csv(tmp_path / "fed" / "merchants" / "north.csv", index=False)
    renamed = EVENTS.assign(event=EVENTS["event"].replace({"purchase": "refund"}))
    to_sqlite(renamed, tmp_path / "fed" / "merchants" / "south.db")
    done = fedseg("simulate", "--data", str(tmp_path / "fed"), "--k", "2", "--strict",
                  "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fedseg: error: {tmp_path / 'fed' / 'merchants' / 'south.db'}: ")
    assert "strict mode: 2 bad rows: 2 unknown event (first at row 2)" in last
    assert not (tmp_path / "out" / "model.json").exists()
