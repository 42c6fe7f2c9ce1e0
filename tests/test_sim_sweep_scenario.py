"""Scenario files and flags, the grid, federation preparation, the sweep's extra metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fedseg.simulations.data.federation import Federation
from fedseg.simulations.experiments.run_metrics import centroid_errors, communication
from fedseg.simulations.experiments.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_epsilons,
    scenario_from_mapping,
)
from fedseg.simulations.experiments.scenario_data import shift_features

SCENARIO_TOML = """
[scenario]
name = "non-iid"
dataset = "mixture"
users = 3000
merchants = 4
alpha = 0.1
epsilons = [0.5, 2, inf]
noise = ["local", "distributed"]
secure_agg = [true]
seeds = 2
"""


def test_toml_scenario_reads_lists_inf_and_seed_count(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO_TOML)
    scenario = load_scenario(path)
    assert scenario.epsilons == (0.5, 2.0, math.inf)
    assert scenario.seeds == (0, 1)
    assert scenario.alpha == 0.1 and scenario.users == 3000
    assert [s.label for s in scenario.settings] == [
        "local + secure agg",
        "distributed + secure agg",
    ]


def test_grid_has_one_point_per_setting_epsilon_seed_with_unique_ids():
    scenario = Scenario(epsilons=(1.0, math.inf), seeds=(3, 4), noise=("local", "distributed"))
    grid = scenario.grid()
    assert len(grid) == 2 * 2 * 2
    assert len({p.point_id for p in grid}) == len(grid)
    assert "local_epsinf_seed3" in {p.point_id for p in grid}


def test_run_config_carries_every_option_in_kebab_case():
    scenario = Scenario(k=7, rounds=3, delta=1e-5, dropout=0.2, recommender=True)
    point = scenario.grid()[0]
    config = scenario.run_config(point)
    assert config == {
        "k": 7,
        "epsilon": point.epsilon,
        "delta": 1e-5,
        "rounds": 3,
        "noise": "local",
        "secure-agg": False,
        "dropout": 0.2,
        "seed": point.seed,
        "recommender": True,
    }


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"epsilon": [1]}, "epsilon"),
        ({"noise": "central"}, "noise"),
        ({"k": 2.5}, "'k'"),
        ({"epsilons": [1, -2]}, "epsilons"),
        ({"secure_agg": ["yes"]}, "secure_agg"),
        ({"data": "/no/such/dir"}, "data"),
    ],
)
def test_bad_scenario_values_name_the_field(values, field):
    with pytest.raises(ScenarioError, match=field):
        scenario_from_mapping(values, where="s.toml")


def test_scenario_file_without_table_is_refused(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("k = 5\n")
    with pytest.raises(ScenarioError, match=r"s\.toml: needs a \[scenario\] table"):
        load_scenario(path)


def test_parse_epsilons_accepts_inf_and_spaces():
    assert parse_epsilons("0.1, 1,inf") == (0.1, 1.0, math.inf)
    with pytest.raises(ValueError):
        parse_epsilons("0.1,lots")


def test_centroid_errors_use_the_best_one_to_one_match_not_greedy():
    # Greedy (reference 3 takes model 4, then 10 gets 0) totals 1 + 10; optimal is 3 + 6.
    model = np.array([[0.0], [4.0]])
    reference = np.array([[3.0], [10.0]])
    assert sorted(centroid_errors(model, reference)) == [3.0, 6.0]


def test_centroid_errors_are_zero_for_a_permutation():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 3))
    assert np.allclose(centroid_errors(centres, centres[[3, 1, 4, 0, 2]]), 0.0)


def test_communication_divides_bytes_by_contributors_and_merchants():
    history = [
        {
            "task": "feature_histograms",
            "asked": 4,
            "contributors": [1, 2, 3, 4],
            "bytes_received": 400,
        },
        {
            "task": "cluster_displacements",
            "asked": 4,
            "contributors": [1, 2],
            "bytes_received": 100,
        },
        {
            "task": "cluster_displacements",
            "asked": 4,
            "contributors": [1, 2, 3, 4],
            "bytes_received": 200,
        },
    ]
    assert communication(history) == {
        "bytes_per_client_round": (50 + 50) / 2,
        "bytes_per_client_total": 700 / 4,
    }


def test_feature_shift_scales_each_merchants_prices_by_one_factor():
    events = {
        m: pd.DataFrame(
            {
                "user_id": [1, 2],
                "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                "event": "purchase",
                "item_id": "a",
                "price": [10.0, 30.0],
            }
        )
        for m in ("m0", "m1")
    }
    fed = Federation(merchants=events, items=None, truth=None, kind="events")
    shifted = shift_features(fed, 0.5, np.random.default_rng(1))
    factors = [shifted.merchants[m]["price"] / events[m]["price"] for m in ("m0", "m1")]
    for f in factors:
        assert f.nunique() == 1  # one regional price level per merchant
    assert factors[0].iloc[0] != factors[1].iloc[0]
    assert events["m0"]["price"].tolist() == [10.0, 30.0]  # input untouched
