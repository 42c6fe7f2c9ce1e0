"""Models that identify themselves: the server stamps model.json, every reader checks it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version

import pytest
from fedseg.privacy.protocol.schema import Feature, FeatureSchema
from fedseg.privacy.published.identity import (
    ModelIdentityError,
    check_features,
    check_identity,
    stamp,
)
from fedseg.privacy.published.segments import PublishedSegments
from fedseg.privacy.scaling import FeatureScaling

from tests.conftest import write_blob_federation

FEDSEG = [sys.executable, "-m", "fedseg.simulations.cli.main"]
SCALING = FeatureScaling(("a", "b"), (False, True), (0.0, 0.0), (1.0, 5.0), (0.5, 2.0), (1.0, 1.0))


def fedseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FEDSEG, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted by the real apps over f0..f2, and a merchant file of that federation."""
    root = tmp_path_factory.mktemp("identity")
    data = write_blob_federation(root / "fed", n=600, d=3, k=2, merchants=2, seed=4)
    done = fedseg("simulate", "--data", str(data), "--k", "2", "--out", str(root / "out"))
    assert done.returncode == 0, done.stderr
    return root / "out" / "model.json", data / "merchants" / "m00.csv"


def test_the_server_stamps_version_run_time_and_the_schema_digest(fitted):
    model_path, _ = fitted
    model = json.loads(model_path.read_text())
    assert model["fedseg_version"] == version("fedseg")
    assert len(model["run_id"]) == 32  # the simulator's run id (uuid4 hex)
    created = datetime.strptime(model["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 600
    segments, _ = PublishedSegments.load(model_path)
    # One fingerprint: the schema's digest, the one merchants' describe replies carry.
    assert model["schema_digest"] == segments.schema.digest()
    assert "schema_fingerprint" not in model
    check_identity(model, source="model.json", schema=segments.schema)  # its reader accepts it


SCHEMA = FeatureSchema(
    (Feature("a", lower=0.0, upper=1.0), Feature("b", "count", lower=0.0, log=True))
)


def test_a_model_is_refused_for_another_schema():
    model = stamp(run_id="7") | {"schema_digest": SCHEMA.digest()}
    check_identity(model, source="m.json", schema=SCHEMA)
    other = FeatureSchema(
        (Feature("a", lower=0.0, upper=2.0), Feature("b", "count", lower=0.0, log=True))
    )
    with pytest.raises(ModelIdentityError, match="m.json: field 'schema_digest' does not match"):
        check_identity(model, source="m.json", schema=other)


@pytest.mark.parametrize(
    ("theirs", "accepted"), [("0.1.0", True), ("0.9.3+local", True), ("1.0.0", False)]
)
def test_another_major_version_is_refused(monkeypatch, theirs, accepted):
    model = stamp(run_id="1") | {"fedseg_version": theirs, "schema_digest": SCHEMA.digest()}
    monkeypatch.setattr("fedseg.privacy.published.identity.fedseg_version", lambda: "0.1.0")
    if accepted:
        check_identity(model, source="m.json")
    else:
        with pytest.raises(ModelIdentityError, match="m.json: field 'fedseg_version' is 1.0.0"):
            check_identity(model, source="m.json")


def test_features_are_compared_by_name_not_order():
    check_features(SCALING, ["b", "a"], source="m.json", data="shop.csv")
    with pytest.raises(ModelIdentityError, match="needs feature 'b', which shop.csv does not give"):
        check_features(SCALING, ["a"], source="m.json", data="shop.csv")
    with pytest.raises(ModelIdentityError, match="shop.csv gives feature 'c', which the model"):
        check_features(SCALING, ["a", "b", "c"], source="m.json", data="shop.csv")


def _corrupt(model: dict, change: str) -> dict:
    if change == "version":
        model["fedseg_version"] = "9.0.0"
    elif change == "no stamp":
        del model["created"]
    elif change == "edited schema":
        model["schema"]["feature"][0]["unit"] = "EUR"
    elif change == "short mean":
        model["scaler"]["mean"] = model["scaler"]["mean"][:1]
    elif change == "text centres":
        model["centroids_standardized"] = "corrupted"
    elif change == "wrong centre width":
        model["centroids_standardized"] = [[0.0]] * 2
    elif change == "recommender":
        model["recommender"] = [1, 2]
    return model


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("version", "'fedseg_version'"),
        ("no stamp", "'created'"),
        ("edited schema", "'schema_digest'"),
        ("short mean", "'scaler'"),
        ("text centres", "'centroids_standardized'"),
        ("wrong centre width", "'centroids_standardized'"),
        ("recommender", "'recommender'"),
    ],
)
def test_assign_refuses_a_broken_or_foreign_model_with_one_line(fitted, tmp_path, change, field):
    model_path, merchant = fitted
    broken = tmp_path / "model.json"
    broken.write_text(json.dumps(_corrupt(json.loads(model_path.read_text()), change)))
    done = fedseg("assign", "--model", str(broken), "--data", str(merchant),
                  "--out", str(tmp_path / "labels.csv"))  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fedseg: error: {broken}: ") and field in last, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "labels.csv").exists()


def test_assign_refuses_a_model_fitted_on_other_features(fitted, tmp_path):
    """A model over f0..f2 (a features table) applied to a shop's events: refused, exit 2."""
    from fedseg.simulations.data.federation import write_federation
    from fedseg.simulations.data.synthetic import generate_federation

    model_path, _ = fitted
    shop = write_federation(generate_federation(users=50, merchants=1, seed=0), tmp_path / "shop")
    events = next((shop / "merchants").iterdir())
    done = fedseg("assign", "--model", str(model_path), "--data", str(events),
                  "--out", str(tmp_path / "labels.csv"))  # fmt: skip
    assert done.returncode == 2
    # The model's own schema says what f0 is; an events table cannot give it.
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"fedseg: error: {events}: feature 'f0' has no formula for events tables")
    )


def test_assign_on_its_own_data_shows_the_load_report(fitted, tmp_path):
    model_path, merchant = fitted
    done = fedseg("assign", "--model", str(model_path), "--data", str(merchant),
                  "--out", str(tmp_path / "labels.csv"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{merchant}: features table, 300 rows read, 300 kept, 0 dropped" in done.stderr
    assert "Your customers per segment" in done.stdout and "300 customers" in done.stdout


def test_a_warm_start_from_another_major_version_is_refused_before_any_release(fitted, tmp_path):
    model_path, merchant = fitted
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_corrupt(json.loads(model_path.read_text()), "version")))
    done = fedseg("simulate", "--data", str(merchant.parent.parent), "--k", "2",
                  "--warm-start", str(old), "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 2
    assert f"{old}: field 'fedseg_version' is 9.0.0" in done.stderr.strip().splitlines()[-1]


def test_the_clientapp_refuses_a_server_of_another_major_version(tmp_path, caplog):
    """Through the shipped ClientApp: the run's describe says the server's fedseg version."""
    from fedseg.privacy.protocol.builtin import numeric_table_schema
    from fedseg.privacy.protocol.codes import CODES
    from fedseg.simulations.backends.replay import Merchants

    data = write_blob_federation(tmp_path / "fed", n=100, d=2, k=2, merchants=1, seed=0)
    group = Merchants({"sim-data-dir": str(data), "seed": 0}, num_nodes=1)
    schema = numeric_table_schema(["f0", "f1"]).to_toml()
    ours = version("fedseg")
    assert "schema_digest" in group.answer("describe", {"schema": schema, "fedseg_version": ours})
    theirs = f"{int(ours.split('.')[0]) + 1}.0.0"
    with caplog.at_level("WARNING"):
        reply = group.ask("describe", {"schema": schema, "fedseg_version": theirs})
    assert reply.error.code == CODES["bad_request"][0]
    assert f"the server runs fedseg {theirs}, this merchant fedseg {ours}" in caplog.text


def test_a_run_whose_server_is_another_major_version_gets_no_merchant(tmp_path, monkeypatch):
    """End to end through the real apps in process: the ServerApp says its version, every
    ClientApp refuses another major one, and the run stops before any release."""
    from fedseg.server.aggregation import RoundFailed
    from fedseg.simulations.experiments.runner import simulate

    data = write_blob_federation(tmp_path / "fed", n=200, d=2, k=2, merchants=2, seed=0)
    monkeypatch.setattr("fedseg.server.rounds.fedseg_version", lambda: "99.0.0")
    with pytest.raises(RoundFailed, match="describe: 0 of 2 merchants") as error:
        simulate(data, {"k": 2, "seed": 0}, out_dir=tmp_path / "out", evaluate=False)
    assert "nothing was released" in str(error.value) and "node 2: bad_request" in str(error.value)
    assert not (tmp_path / "out" / "model.json").exists()


@pytest.mark.slow
def test_a_model_of_other_data_is_refused_not_applied(tmp_path):
    """A shop's model (its categories, its catalogue) on a film service's ratings: every
    share of the model would be 0 and every recommendation an item it does not sell."""
    import pandas as pd

    made = fedseg("generate", "--out", str(tmp_path / "fed"), "--users", "900", "--merchants",
                  "2", "--seed", "0")  # fmt: skip
    assert made.returncode == 0, made.stderr
    done = fedseg("simulate", "--data", str(tmp_path / "fed"), "--k", "3", "--recommender",
                  "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    model = tmp_path / "out" / "model.json"
    shop = pd.read_csv(tmp_path / "fed" / "merchants" / "m0.csv", dtype=str)
    cases = {
        "films.csv": (shop.assign(category="Comedy", item_id="film-" + shop["item_id"]),
                      "customers has any"),
        "other_items.csv": (shop.assign(item_id="film-" + shop["item_id"]),
                            "field 'recommender': none of"),
    }  # fmt: skip
    for name, (table, expected) in cases.items():
        table.to_csv(tmp_path / name, index=False)
        done = fedseg("assign", "--model", str(model), "--data", str(tmp_path / name),
                      "--out", str(tmp_path / f"{name}.labels"))  # fmt: skip
        assert done.returncode == 2, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"fedseg: error: {model}: ") and expected in last, last
        assert last.endswith("the model was made for other data")
        assert not (tmp_path / f"{name}.labels").exists()
