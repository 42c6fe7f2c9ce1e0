"""Choosing k privately: k ranges, the shared budget, the noisy cost curve, the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fedseg.privacy.accounting import epsilon_spent
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server.model import SegmentModel
from fedseg.simulations.choose_k import (
    KRangeError,
    composed_spend,
    parse_k_range,
    per_run_epsilon,
    planned_releases,
    suggest_k,
    unexplained_share,
)


@pytest.mark.parametrize(("text", "ks"), [("5", (5,)), ("2-4", (2, 3, 4)), ("8,2,4", (2, 4, 8))])
def test_k_ranges(text, ks):
    assert parse_k_range(text) == ks


@pytest.mark.parametrize("text", ["", "a-b", "0-3", "2,2", "5-3"])
def test_bad_k_ranges_are_refused(text):
    with pytest.raises(KRangeError, match="--k"):
        parse_k_range(text)


@pytest.mark.parametrize("runs", [1, 3, 9])
def test_all_runs_together_stay_within_the_total_and_beat_an_even_split(runs):
    config = {"rounds": 4, "seed": 0}
    eps = per_run_epsilon(config, runs=runs, epsilon_total=2.0, delta=1e-6)
    plan = planned_releases(config, epsilon=eps)
    together = epsilon_spent([r for r in plan for _ in range(runs)], delta=1e-6)
    assert together <= 2.0
    assert together > 2.0 * 0.98  # the search does not leave budget on the table
    assert eps >= 2.0 / runs  # composition of Gaussians is better than dividing ε
    if runs == 9:
        assert eps > 2.0 * 2 / 9  # √m-like: more than twice the even split


def _model(centres, sizes, *, d):
    scaling = FeatureScaling(
        names=tuple(f"f{i}" for i in range(d)),
        log=(False,) * d,
        lower=(-10.0,) * d,
        upper=(10.0,) * d,
        mean=(0.0,) * d,
        scale=(1.0,) * d,
    )
    return SegmentModel(scaling, np.asarray(centres, float), np.asarray(sizes, float))


def test_unexplained_share_by_hand():
    # d=2, N̂=4, so the estimated total is 8; between = 2·1 + 2·4 = 10 > 8.
    model = _model([[1.0, 0.0], [0.0, 2.0]], [2.0, 2.0], d=2)
    assert unexplained_share(model) == 0.0  # between (10) exceeds N̂·d (8): clipped at 0
    model = _model([[1.0, 0.0], [0.0, 1.0]], [3.0, 1.0], d=2)
    assert unexplained_share(model) == pytest.approx((8 - 3 - 1) / 8)


def test_negative_noisy_sizes_count_as_empty():
    model = _model([[1.0, 0.0], [5.0, 5.0]], [4.0, -2.0], d=2)
    assert unexplained_share(model) == pytest.approx((8 - 4) / 8)


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
    config = {"rounds": 4}
    plan = planned_releases(config, epsilon=1.0)
    report = {
        "releases": [
            {"name": r.name, "noise_multiplier": r.noise_multiplier, "count": r.count} for r in plan
        ]
    }
    model = _model([[0.0]], [1.0], d=1)
    model = SegmentModel(
        model.scaling, model.centres_standardized, model.segment_sizes, privacy=report
    )
    assert composed_spend([model], delta=1e-6) == pytest.approx(1.0, rel=0.01)
    assert composed_spend([model, model], delta=1e-6) > 1.2
    assert math.isfinite(composed_spend([model] * 3, delta=1e-6))
