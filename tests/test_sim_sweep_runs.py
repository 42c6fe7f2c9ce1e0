"""The sweep end to end on a small federation: rows, spent ε, error rows, resume, pool."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_blob_federation
from fedseg.simulations.experiments.run_metrics import evaluate_point, pooled_data
from fedseg.simulations.experiments.runner import evaluate_model, simulate
from fedseg.simulations.experiments.scenario import Scenario
from fedseg.simulations.experiments.sweep import collect_results, run_sweep


@pytest.fixture(scope="module")
def small_federation(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fed")
    return write_blob_federation(root, n=1200, d=3, k=3, merchants=3, seed=5)


def test_cached_evaluation_matches_the_runners(small_federation, tmp_path):
    result = simulate(
        small_federation,
        {"k": 3, "epsilon": 4.0, "seed": 2},
        out_dir=tmp_path / "run",
        evaluate=False,
    )
    expected = evaluate_model(result.model, small_federation, seed=2)
    pooled = pooled_data(small_federation, k=3, seed=2, cache_dir=tmp_path / "cache")
    again = pooled_data(small_federation, k=3, seed=2, cache_dir=tmp_path / "cache")  # from .npz
    for data in (pooled, again):
        got = evaluate_point(result.model, data, seed=2)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12), key


def test_simulate_evaluates_what_the_merchants_loaded_without_reading_again(
    small_federation, tmp_path, monkeypatch
):
    import fedseg.client.merchant as merchant
    import fedseg.simulations.experiments.runner as runner

    built = []

    def counted(path, **kwargs):
        built.append(Path(path).name)
        return real(path, **kwargs)

    real = merchant.customer_features
    monkeypatch.setattr(merchant, "customer_features", counted)
    monkeypatch.setattr(runner, "customer_features", counted)
    result = simulate(
        small_federation, {"k": 3, "epsilon": 4.0, "seed": 2}, out_dir=tmp_path / "run"
    )
    assert sorted(built) == sorted(p.name for p in (small_federation / "merchants").iterdir())
    expected = evaluate_model(result.model, small_federation, seed=2)  # the files, read again
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, rel=1e-12), key


def test_sweep_writes_one_row_per_point_with_spent_epsilon_and_error_rows(
    small_federation, tmp_path
):
    scenario = Scenario(
        data=str(small_federation),
        k=3,
        rounds=3,
        epsilons=(1.0, math.inf),
        seeds=(0, 1),
        noise=("local", "distributed"),
    )
    result = run_sweep(scenario, tmp_path / "out", workers=0, progress=False)
    table = pd.read_csv(result.csv_path)
    assert len(table) == 2 * 2 * 2
    ok = table[table["status"] == "ok"]
    # distributed noise without secure aggregation is refused by the server config
    assert set(ok["noise"]) == {"local"} and len(ok) == 4
    errors = table[table["status"] == "error"]
    assert errors["error"].str.contains("secure aggregation").all()
    finite = ok[ok["epsilon"] < math.inf]
    assert (finite["epsilon_spent"] <= finite["epsilon"] * (1 + 1e-9)).all()
    assert (ok[ok["epsilon"] == math.inf]["epsilon_spent"] == math.inf).all()
    for column in (
        "cost_ratio",
        "ari",
        "nmi",
        "empty_clusters",
        "centroid_error",
        "bytes_per_client_round",
        "wall_s",
    ):
        assert ok[column].notna().all(), column
    # ε = ∞ runs plain Lloyd from a good start: it should recover well separated blobs.
    assert ok[ok["epsilon"] == math.inf]["ari"].min() > 0.9


def test_sweep_resumes_without_recomputing_finished_points(small_federation, tmp_path):
    scenario = Scenario(
        data=str(small_federation), k=3, rounds=3, epsilons=(2.0, math.inf), seeds=(0,)
    )
    out = tmp_path / "out"
    run_sweep(scenario, out, workers=0, progress=False)
    points = sorted((out / "points").glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in points}
    points[0].unlink()
    run_sweep(scenario, out, workers=0, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    assert set(after) == set(stamps)
    assert after[points[1].name] == stamps[points[1].name]  # untouched
    assert json.loads(points[0].read_text())["status"] == "ok"  # recomputed


@pytest.mark.slow
def test_sweep_on_two_spawned_workers_matches_inline(small_federation, tmp_path):
    scenario = Scenario(
        data=str(small_federation), k=3, rounds=3, epsilons=(1.0, math.inf), seeds=(0, 1)
    )
    pooled = run_sweep(scenario, tmp_path / "pool", workers=2, progress=False).results
    inline = run_sweep(scenario, tmp_path / "inline", workers=0, progress=False).results
    columns = ["point_id", "epsilon_spent", "cost_ratio", "ari", "centroid_error"]
    pd.testing.assert_frame_equal(pooled[columns], inline[columns])


def test_nested_metrics_become_dotted_columns(tmp_path):
    points = tmp_path / "points"
    points.mkdir()
    record = {
        "point_id": "p0", "setting": "local", "noise": "local", "secure_agg": False,
        "epsilon": 1.0, "seed": 0, "status": "ok", "error": "",
        "metrics": {"ari": 0.9, "recommender": {"hr_at_10": 0.5, "baselines": {"g": {"x": 2}},
                                                "recall_at_20": 0.2, "ndcg_at_10_full": 0.05}},
    }  # fmt: skip
    (points / "p0.json").write_text(json.dumps(record))
    frame = collect_results(tmp_path)
    # the full-ranking headline comes right after the point's identity
    assert list(frame.columns[8:10]) == ["recommender.recall_at_20", "recommender.ndcg_at_10_full"]
    row = frame.iloc[0]
    assert row["ari"] == 0.9 and row["recommender.hr_at_10"] == 0.5
    assert row["recommender.baselines.g.x"] == 2


@pytest.mark.slow
def test_sweep_with_the_recommender_reports_its_hit_rates(tmp_path):
    from fedseg.simulations.data.federation import write_federation
    from fedseg.simulations.data.synthetic import generate_federation

    data = write_federation(generate_federation(users=900, merchants=2, seed=4), tmp_path / "fed")
    scenario = Scenario(
        data=str(data), k=3, rounds=2, epsilons=(4.0,), seeds=(0,), recommender=True
    )
    table = pd.read_csv(run_sweep(scenario, tmp_path / "out", workers=0, progress=False).csv_path)
    row = table.iloc[0]
    assert row["status"] == "ok", row["error"]
    # Random ranking gets 0.1; the personas buy differently, so both clear it.
    assert row["recommender.hr_at_10"] > 0.2
    assert row["recommender.baselines.segment_popularity.hr_at_10"] > 0.2
    assert row["recommender.evaluated_customers"] > 800


def test_an_earlier_runs_cached_features_are_not_this_runs(small_federation, tmp_path):
    import time

    from fedseg.client.errors import DataError
    from fedseg.simulations.experiments.runner import loaded_features

    state = tmp_path / "state"  # kept: the second run draws on the same ledgers
    config = {"k": 3, "epsilon": 4.0, "seed": 2, "sim-epsilon-cap": 8.0}
    first = simulate(small_federation, config, out_dir=tmp_path / "a", state_dir=state)
    assert first.metrics["n_merchants_evaluated"] == 3
    time.sleep(0.3)  # past the clock slack: the first run's entries are now an earlier run's
    second = simulate(small_federation, config, out_dir=tmp_path / "b", state_dir=state)
    assert second.metrics["n_merchants_evaluated"] == 3  # used from the cache: this run's
    assert second.metrics["n_users"] == first.metrics["n_users"]
    run_config = {"sim-data-dir": str(small_federation), "sim-state-dir": str(state),
                  "seed": 2, "as-of": first.model.extras["as_of"]}  # fmt: skip
    with pytest.raises(DataError, match="no merchant prepared features"):
        loaded_features(small_federation, run_config, first.model.schema, since=time.time() + 5)
    x, _, names = loaded_features(small_federation, run_config, first.model.schema, since=0.0)
    assert len(names) == 3 and len(x) == first.metrics["n_users"]


def test_disagreement_is_the_matched_share_of_customers_in_another_segment():
    import numpy as np
    from fedseg.simulations.experiments.metrics import disagreement

    # segments 0 ↔ 1 and 1 ↔ 0 match (2 + 2 customers); the fifth has no partner segment
    assert disagreement(np.array([0, 0, 1, 1, 2]), np.array([1, 1, 0, 0, 0])) == pytest.approx(0.2)
    assert disagreement(np.array([2, 2, 0]), np.array([0, 0, 1])) == 0.0  # relabelled only


def test_metrics_name_the_partition_without_planted_segments(small_federation, tmp_path):
    untold = tmp_path / "fed"
    (untold / "merchants").mkdir(parents=True)
    for path in (small_federation / "merchants").iterdir():
        (untold / "merchants" / path.name).write_bytes(path.read_bytes())
    metrics = simulate(untold, {"k": 3, "epsilon": 4.0, "seed": 2}, out_dir=tmp_path / "o").metrics
    assert "ari" not in metrics and 0.0 <= metrics["disagreement"] < 0.05
    assert (
        json.loads((tmp_path / "o" / "metrics.json").read_text())["disagreement"]
        == (metrics["disagreement"])
    )
