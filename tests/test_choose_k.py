"""Choosing k privately: k ranges, the shared budget, the noisy cost curve, the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fedseg.privacy.accounting import Release, epsilon_spent
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server.budget import noise_plan
from fedseg.server.config import SegmentationConfig
from fedseg.server.model import SegmentModel
from fedseg.simulations.experiments.choose_k import (
    KRangeError,
    choose_k,
    composed_spend,
    fit_releases,
    merged_model,
    parse_k_range,
    plan_budget,
    square_norm_per_customer,
    suggest_k,
    unexplained_share,
)

from tests.conftest import write_blob_federation


@pytest.mark.parametrize(("text", "ks"), [("5", (5,)), ("2-4", (2, 3, 4)), ("8,2,4", (2, 4, 8))])
def test_k_ranges(text, ks):
    assert parse_k_range(text) == ks


@pytest.mark.parametrize("text", ["", "a-b", "0-3", "1", "2,2", "5-3"])
def test_bad_k_ranges_are_refused(text):
    with pytest.raises(KRangeError, match="--k"):
        parse_k_range(text)


def _precision(releases):
    return sum(r.count / r.noise_multiplier**2 for r in releases)


@pytest.mark.parametrize("runs", [1, 3, 9])
def test_the_plan_spends_the_total_and_no_more(runs):
    config = {"rounds": 4, "seed": 0}
    budget = plan_budget(config, runs=runs, epsilon_total=2.0, delta=1e-6)
    together = epsilon_spent(list(budget.planned), delta=1e-6)
    assert 2.0 * 0.99 < together <= 2.0  # within, and nothing left on the table
    shared = [r for r in budget.planned if r.name in ("feature_ranges", "feature_moments")]
    assert len(shared) == 2  # the statistics are released once, for every k
    assert _precision(shared) / _precision(budget.planned) == pytest.approx(0.25)


def test_the_server_turns_each_config_back_into_the_planned_noise():
    runs = 9
    budget = plan_budget(
        {"rounds": 4}, runs=runs, epsilon_total=2.0, delta=1e-6, square_norm_share=0.0
    )
    first = noise_plan(SegmentationConfig.from_run_config({"rounds": 4, **budget.first}))
    other = noise_plan(
        SegmentationConfig.from_run_config({"rounds": 4, **budget.others}),
        statistics=False,
        init=False,  # the smaller k warm-start from the larger k's merged centres
    )
    planned = {}  # the shared releases and the first fit's come first in the plan
    for r in budget.planned:
        planned.setdefault(r.name, r.noise_multiplier)
    for name in planned:
        # calibrate() never overshoots: at most 1 % more noise than planned, never less.
        assert planned[name] <= first[name] <= 1.01 * planned[name]
    assert set(other) == {"cluster_displacements", "segment_profiles"}
    lloyd = [r.noise_multiplier for r in budget.planned if r.name == "cluster_displacements"]
    assert len(lloyd) == runs and all(z == lloyd[1] for z in lloyd[1:])
    assert lloyd[1] <= other["cluster_displacements"] <= 1.01 * lloyd[1]
    recorded = [
        Release(n, z, count=4 if n == "cluster_displacements" else 1) for n, z in first.items()
    ]
    recorded += [
        Release(n, z, count=4 if n == "cluster_displacements" else 1) for n, z in other.items()
    ] * 8
    assert epsilon_spent(recorded, delta=1e-6) <= 2.0


def test_sharing_statistics_beats_an_even_split():
    runs = 9
    budget = plan_budget({"rounds": 4}, runs=runs, epsilon_total=2.0, delta=1e-6)
    assert budget.others["epsilon"] > 2.0 * 2 / runs  # √m-like composition, not ε/m
    z_fit = {
        r.name: r.noise_multiplier
        for r in fit_releases({"rounds": 4}, epsilon=budget.others["epsilon"])
    }
    z_hist = next(r.noise_multiplier for r in budget.planned if r.name == "feature_ranges")
    assert z_hist < z_fit["cluster_displacements"] / 2  # the shared release is far less noisy


def test_bad_shares_are_refused():
    with pytest.raises(ValueError, match="share"):
        plan_budget({}, runs=3, epsilon_total=2.0, delta=1e-6, statistics_share=0.0)
    with pytest.raises(ValueError, match="share"):
        plan_budget(
            {}, runs=3, epsilon_total=2.0, delta=1e-6, statistics_share=0.7, square_norm_share=0.3
        )


def _model(centres, sizes, *, d, extras=None, mean=0.0, scale=1.0):
    scaling = FeatureScaling(
        names=tuple(f"f{i}" for i in range(d)),
        log=(False,) * d,
        lower=(-10.0,) * d,
        upper=(10.0,) * d,
        mean=(mean,) * d,
        scale=(scale,) * d,
    )
    return SegmentModel(
        scaling, np.asarray(centres, float), np.asarray(sizes, float), extras=extras or {}
    )


def test_merging_takes_the_pair_with_the_smallest_ward_cost():
    # Ward costs: (0,1) 10·1/11·1 = 0.91, (1,2) 1·1/2·0.25 = 0.125, (0,2) 10/11·2.25 = 2.05.
    model = _model([[0.0], [1.0], [1.5]], [10.0, 1.0, 1.0], d=1)
    merged = merged_model(model, 2)
    np.testing.assert_allclose(merged.centres_standardized, [[0.0], [1.25]])
    np.testing.assert_allclose(merged.segment_sizes, [10.0, 2.0])
    one = merged_model(model, 1)  # the size-weighted mean of everything
    np.testing.assert_allclose(one.centres_standardized, [[(0 + 1 + 1.5) / 12]])
    assert merged.scaling == model.scaling
    with pytest.raises(ValueError, match="down to 4"):
        merged_model(model, 4)


def test_unexplained_share_by_hand():
    # d=2, N̂=4, so the estimated total is 8; between = 2·1 + 2·4 = 10 > 8.
    model = _model([[1.0, 0.0], [0.0, 2.0]], [2.0, 2.0], d=2)
    assert unexplained_share(model) == 0.0  # between (10) exceeds N̂·d (8): clipped at 0
    model = _model([[1.0, 0.0], [0.0, 1.0]], [3.0, 1.0], d=2)
    assert unexplained_share(model) == pytest.approx((8 - 3 - 1) / 8)
    assert unexplained_share(model, square_norm=3.0) == pytest.approx((12 - 3 - 1) / 12)


def test_negative_noisy_sizes_count_as_empty():
    model = _model([[1.0, 0.0], [5.0, 5.0]], [4.0, -2.0], d=2)
    assert unexplained_share(model) == pytest.approx((8 - 4) / 8)


def test_square_norm_from_marginals_by_hand():
    # One feature, bins [-3,-1), [-1,1), [1,3) with mids -2, 0, 2; mean 0, scale 2:
    # z = -1, 0, 1 with counts 1, 2, 1 (a noisy -3 counts as empty) → Σz²/N = 2/4.
    marginals = {"counts": [[1.0, 2.0, 1.0]], "edges": [[-3.0, -1.0, 1.0, 3.0]]}
    model = _model([[0.0]], [4.0], d=1, extras={"marginals": marginals}, scale=2.0)
    assert square_norm_per_customer(model) == pytest.approx(0.5)
    marginals["counts"] = [[1.0, 2.0, -3.0]]
    assert square_norm_per_customer(model) == pytest.approx(1.0 / 3.0)


def test_a_released_square_norm_wins_over_the_marginals():
    marginals = {
        "counts": [[1.0, 2.0, 1.0]],
        "edges": [[-3.0, -1.0, 1.0, 3.0]],
        "square_norm": 20.0,
    }
    model = _model([[0.0]], [4.0], d=1, extras={"marginals": marginals}, scale=2.0)
    assert square_norm_per_customer(model) == pytest.approx(20.0 / 4.0)


def test_rule_picks_the_elbow_of_a_known_curve():
    # The non-private unexplained cost per customer measured on the default synthetic
    # federation (k = 2..10): relative gains 24%, 27%, 27%, then 8.2%, 8.6%, 7.1%, 4.6%, 5.2%.
    ks = range(2, 11)
    curve = [9.248, 7.062, 5.16, 3.749, 3.44, 3.144, 2.921, 2.788, 2.643]
    assert suggest_k(ks, curve, min_gain=0.10) == 5
    assert suggest_k(ks, curve, min_gain=0.05) == 8  # 8 → 9 gains 4.6 %
    assert suggest_k(ks, curve, min_gain=0.5) == 2
    assert suggest_k([2, 3], [1.0, 0.1], min_gain=0.1) == 3  # always improving: largest k


def test_composed_spend_reads_model_privacy_reports():
    plan = fit_releases({"rounds": 4}, epsilon=1.0)
    report = {
        "releases": [
            {"name": r.name, "noise_multiplier": r.noise_multiplier, "count": r.count} for r in plan
        ]
    }
    model = SegmentModel(
        _model([[0.0]], [1.0], d=1).scaling, np.zeros((1, 1)), np.ones(1), privacy=report
    )
    assert composed_spend([model], delta=1e-6) == pytest.approx(1.0, rel=0.01)
    assert composed_spend([model, model], delta=1e-6) > 1.2
    assert math.isfinite(composed_spend([model] * 3, delta=1e-6))


@pytest.mark.slow
def test_choose_k_end_to_end_shares_statistics_within_the_total(tmp_path):
    data = write_blob_federation(tmp_path / "fed", n=3000, d=4, k=3, merchants=3, seed=7)
    choice = choose_k(
        data, {"seed": 0, "rounds": 3}, [2, 3, 4], epsilon_total=4.0, out_dir=tmp_path / "out"
    )
    models = {k: SegmentModel.load(tmp_path / "out" / f"k{k}" / "model.json") for k in (2, 3, 4)}
    assert choice.epsilon_spent == pytest.approx(composed_spend(list(models.values()), delta=1e-6))
    assert choice.epsilon_spent <= 4.0
    names = {k: {r["name"] for r in m.privacy["releases"]} for k, m in models.items()}
    assert "feature_ranges" in names[4]  # the largest k releases the shared statistics
    assert "feature_ranges" not in names[2] | names[3]
    assert models[2].scaling == models[3].scaling == models[4].scaling
    assert choice.suggested_k in (2, 3, 4)
    assert all(0 <= w <= 1 for w in choice.unexplained)
    assert list(choice.unexplained) == sorted(choice.unexplained, reverse=True)


@pytest.mark.slow
def test_private_choice_finds_the_planted_k_on_the_default_federation(tmp_path):
    from fedseg.simulations.data.federation import write_federation
    from fedseg.simulations.data.synthetic import generate_federation

    data = write_federation(generate_federation(seed=0), tmp_path / "fed")
    choice = choose_k(data, {"seed": 0, "delta": 1e-6}, range(2, 11), epsilon_total=2.0)
    assert choice.suggested_k == 5
    assert choice.epsilon_spent <= 2.0
