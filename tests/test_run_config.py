"""The run config: Flower's run_config parsed once into SegmentationConfig and its parts.

Every kebab-case key keeps its name (docs/contract.md); a key nobody reads is refused with
one line, not ignored (a typo such as ``epsilom = 0.5`` would otherwise run at ε = 1)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import run_on_grid
from fedseg.server.config import SegmentationConfig
from fedseg.simulations.backends import flower_run
from fedseg.simulations.backends.inprocess import InProcessGrid
from fedseg.simulations.deploy.commands import app_run_config
from fedseg.simulations.experiments.runner import simulate

ROOT = Path(__file__).resolve().parents[1]

# Every key the server reads, a value other than its default (but for the two that conflict
# with secure aggregation, tried on their own below), and where it lands.
KEYS = {
    "k": (3, lambda c: c.k),
    "epsilon": (0.5, lambda c: c.epsilon),
    "delta": (1e-7, lambda c: c.delta),
    "rounds": (3, lambda c: c.rounds),
    "init-rounds": (2, lambda c: c.init_rounds),
    "range-bins": (32, lambda c: c.range_bins),
    "features": ("cdnow", lambda c: c.features),
    "noise": ("distributed", lambda c: c.noise),
    "aggregation": ("sum", lambda c: c.aggregation),
    "min-clients": (2, lambda c: c.min_clients),
    "expected-nodes": (4, lambda c: c.expected_nodes),
    "round-timeout": (30.0, lambda c: c.round_timeout),
    "seed": (7, lambda c: c.seed),
    "as-of": ("2025-01-01T00:00:00Z", lambda c: c.as_of),
    "range-share": (0.2, lambda c: c.shares.ranges),
    "moments-share": (0.05, lambda c: c.shares.moments),
    "init-share": (0.2, lambda c: c.shares.init),
    "profiles-share": (0.05, lambda c: c.shares.profiles),
    "square-norm-share": (0.01, lambda c: c.shares.square_norm),
    "secure-agg": (True, lambda c: c.secagg.enabled),
    "dropout-tolerance": (0.2, lambda c: c.secagg.dropout_tolerance),
    "collusion": (0.1, lambda c: c.secagg.collusion),
    "secagg-roster": ("roster.json", lambda c: c.secagg.roster),
    "recommender": (True, lambda c: c.recommender.enabled),
    "recommender-share": (0.4, lambda c: c.recommender.share),
    "content-share": (0.2, lambda c: c.recommender.content_share),
    "recommender-model": ("ease", lambda c: c.recommender.model),
    "fedavg-rounds": (2, lambda c: c.recommender.fedavg_rounds),
    "items": ("items.csv", lambda c: c.recommender.items),
    "lifetime-value": (True, lambda c: c.lifetime.enabled),
    "lifetime-share": (0.3, lambda c: c.lifetime.share),
    "lifetime-horizon": (180.0, lambda c: c.lifetime.horizon),
    "warm-start": ("a/model.json", lambda c: c.warm_start.centres_from),
    "statistics-from": ("b/model.json", lambda c: c.warm_start.statistics_from),
}


def test_every_key_reaches_its_setting_under_its_old_name():
    cfg = SegmentationConfig.from_run_config({key: value for key, (value, _) in KEYS.items()})
    assert {key: where(cfg) for key, (_, where) in KEYS.items()} == {
        key: value for key, (value, _) in KEYS.items()
    }
    assert set(KEYS) == set(SegmentationConfig.defaults())  # no setting left out of the table
    alone = SegmentationConfig.from_run_config(
        {"aggregation": "median", "recommender-model": "dpsgd"}
    )
    assert (alone.aggregation, alone.recommender.model) == ("median", "dpsgd")


def test_run_config_strings_are_read_as_flower_and_the_cli_send_them():
    cfg = SegmentationConfig.from_run_config(
        {"k": "4", "secure-agg": "true", "recommender": "0", "lifetime-horizon": "90"}
    )
    assert (cfg.k, cfg.secagg.enabled, cfg.recommender.enabled) == (4, True, False)
    assert cfg.lifetime.horizon == 90.0


def test_a_misspelt_key_is_refused_naming_the_nearest_known_key():
    with pytest.raises(ValueError) as refused:
        SegmentationConfig.from_run_config({"k": 3, "epsilom": 0.5})
    assert str(refused.value) == "run config: unknown key 'epsilom' (did you mean 'epsilon'?)"


def test_a_key_like_no_known_one_is_refused_by_name():
    with pytest.raises(ValueError) as refused:
        SegmentationConfig.from_run_config({"colour": "red"})
    assert str(refused.value) == "run config: unknown key 'colour'"


def test_keys_the_apps_and_simulations_add_are_known():
    """Beside the settings, the run config carries where the ServerApp writes and what the
    simulated merchants and the simulator read (client/merchant.py, simulations/)."""
    others = {"out-dir": "out", "sim-run-id": "r1", "sim-data-dir": "fed", "sim-state-dir": "",
              "sim-epsilon-cap": 2.0, "sim-holdout-last": True, "dropout": 0.1}  # fmt: skip
    assert SegmentationConfig.from_run_config(others) == SegmentationConfig()


def test_the_shipped_app_projects_declare_only_known_keys():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    SegmentationConfig.from_run_config(pyproject["tool"]["flwr"]["app"]["config"])
    SegmentationConfig.from_run_config(app_run_config({"k": 3}))


def test_app_project_refuses_a_misspelt_override_as_the_server_would():
    with pytest.raises(ValueError, match=r"unknown key 'min-client' \(did you mean 'min-clients'"):
        app_run_config({"min-client": 3})


def test_flwr_run_fails_the_server_app_on_a_misspelt_key_in_the_project(mixture_federation):
    """`flwr run .` hands the ServerApp every key of [tool.flwr.app.config], typos too."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    config = {**pyproject["tool"]["flwr"]["app"]["config"], "epsilom": 0.5,
              "sim-data-dir": str(mixture_federation)}  # fmt: skip
    with pytest.raises(ValueError, match=r"^run config: unknown key 'epsilom' \(did you mean"):
        run_on_grid(flower_run.server_app, InProcessGrid, flower_run.client_app, num_nodes=3,
                    run_config=config)  # fmt: skip


def test_a_simulation_with_a_misspelt_key_stops_before_any_release(mixture_federation, tmp_path):
    with pytest.raises(ValueError, match="unknown key 'rounds-share'"):
        simulate(mixture_federation, {"k": 3, "rounds-share": 0.5}, out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "model.json").exists()


def test_the_cli_says_so_in_one_line_and_exits_2(mixture_federation, tmp_path):
    """A federation.toml typo is the one free-form key a `fedseg simulate` run reads."""
    (mixture_federation / "federation.toml").write_text('features = "schema.toml"\nas_off = "x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "fedseg.simulations.cli.main", "simulate", "--data",
         str(mixture_federation), "--k", "3", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines == [
        f"fedseg: error: {mixture_federation / 'federation.toml'}: unknown key 'as_off' "
        "(did you mean 'as_of'?)"
    ]
