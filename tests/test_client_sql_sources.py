"""SQL sources everywhere a path is accepted; credentials from the environment or a file,
never from the URL, and never in a message."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fedseg.client.loading import DataError, load_merchant_table
from fedseg.client.sql_sources import _password, redact, restore_url
from fedseg.client.tables import source_label
from fedseg.privacy.protocol.builtin import numeric_table_schema
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.privacy.published.identity import stamp

PSEUDO = Pseudonymizer.for_simulation("sql", 0)
SECRET = "s3cr3t-pa55"


def sqlite_table(path: Path, table: pd.DataFrame, name: str = "events") -> Path:
    with sqlite3.connect(path) as connection:
        table.to_sql(name, connection, index=False)
    connection.close()
    return path


FEATURES = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "f0": [0.0, 0.1, 5.0, 5.1],
                         "f1": [0.0, 0.2, 5.0, 4.9]})  # fmt: skip


def test_a_url_whose_slashes_a_path_type_collapsed_is_read_as_meant(tmp_path, monkeypatch):
    db = sqlite_table(tmp_path / "shop.db", FEATURES)
    url = f"sqlite:///{db}?table=events"  # sqlite:////abs/shop.db?table=events
    assert str(Path(url)).startswith("sqlite:/") and "//" not in str(Path(url))
    assert restore_url(Path(url)) == url and source_label(Path(url)) == url
    direct, _ = load_merchant_table(url, pseudonymizer=PSEUDO)
    collapsed, report = load_merchant_table(Path(url), pseudonymizer=PSEUDO)
    pd.testing.assert_frame_equal(collapsed, direct)
    assert report.source == url
    monkeypatch.chdir(tmp_path)  # sqlite:///shop.db is relative to the working directory
    relative, _ = load_merchant_table(Path("sqlite:///shop.db?table=events"), pseudonymizer=PSEUDO)
    pd.testing.assert_frame_equal(relative, direct)
    assert restore_url(Path("postgresql://shop@db.internal/sales?table=t")) == (
        "postgresql://shop@db.internal/sales?table=t"
    )
    assert restore_url(tmp_path / "shop.csv") is None


def test_fedseg_assign_reads_a_sqlite_url(tmp_path):
    """The command merchants run, with the URL docs/merchant.md shows (a Path option)."""
    db = sqlite_table(tmp_path / "shop.db", FEATURES)
    names = ["f0", "f1"]
    model = {
        "scaler": {"names": names, "log": [False, False], "lower": [0.0, 0.0],
                   "upper": [10.0, 10.0], "mean": [2.5, 2.5], "scale": [2.5, 2.5]},
        "centroids_standardized": [[-1.0, -1.0], [1.0, 1.0]],
    }  # fmt: skip
    schema = numeric_table_schema(names)  # as the server stamps a model of a features table
    model |= stamp(run_id="test") | {"schema": schema.to_dict(), "schema_digest": schema.digest()}
    (tmp_path / "model.json").write_text(json.dumps(model))
    out = tmp_path / "labels.csv"
    result = subprocess.run(
        [sys.executable, "-m", "fedseg.simulations.cli", "assign", "--model",
         str(tmp_path / "model.json"), "--data", f"sqlite:///{db}?table=events", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    labels = pd.read_csv(out)
    assert labels["user_id"].tolist() == ["a", "b", "c", "d"]
    assert labels["segment"].tolist() == [1, 1, 2, 2]


def test_a_password_in_the_url_is_refused_and_never_shown(tmp_path):
    url = f"postgresql://shop:{SECRET}@127.0.0.1:1/sales?table=events"
    assert redact(url) == "postgresql://shop:***@127.0.0.1:1/sales?table=events"
    assert SECRET not in source_label(url)
    with pytest.raises(DataError, match="PGPASSWORD or in a file named by") as error:
        load_merchant_table(url, pseudonymizer=PSEUDO)
    assert SECRET not in str(error.value)
    assert str(error.value).startswith("postgresql://shop:***@127.0.0.1:1/sales?table=events: ")


def test_the_password_comes_from_a_file_or_pgpassword(tmp_path, monkeypatch):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    secret_file = tmp_path / "db.pass"
    secret_file.write_text(f"{SECRET}\nignored second line\n")
    from_file = sqlalchemy.engine.make_url(
        f"postgresql://shop@db.internal/sales?table=t&password-file={secret_file}"
    )
    monkeypatch.setenv("PGPASSWORD", "from-env")
    assert _password(from_file, "label") == SECRET
    plain = sqlalchemy.engine.make_url("postgresql://shop@db.internal/sales?table=t")
    assert _password(plain, "label") == "from-env"
    monkeypatch.delenv("PGPASSWORD")
    assert _password(plain, "label") == ""
    missing = sqlalchemy.engine.make_url("postgresql://shop@h/db?password-file=/no/such/file")
    with pytest.raises(DataError, match="cannot read the password file /no/such/file"):
        _password(missing, "label")


def test_a_failed_postgresql_connection_names_the_source_without_the_password(
    tmp_path, monkeypatch
):
    pytest.importorskip("psycopg")
    with socket.socket() as probe:  # a local port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PGPASSWORD", SECRET)
    url = f"postgresql://shop@127.0.0.1:{port}/sales?table=events"
    with pytest.raises(DataError) as error:
        load_merchant_table(url, pseudonymizer=PSEUDO)
    message = str(error.value)
    assert message.startswith(f"{url}: cannot read SQL table (") and "\n" not in message
    assert SECRET not in message


def test_other_sql_urls_read_like_sqlite(tmp_path):
    db = sqlite_table(tmp_path / "shop.db", FEATURES)
    direct, _ = load_merchant_table(f"sqlite:///{db}?table=events", pseudonymizer=PSEUDO)
    through, _ = load_merchant_table(f"sqlite+pysqlite:///{db}?table=events", pseudonymizer=PSEUDO)
    pd.testing.assert_frame_equal(through, direct)
    assert np.allclose(direct["f0"], FEATURES["f0"])
