"""Lifetime value: the purchase summaries, the BG/NBD and Gamma-Gamma fits against `lifetimes`,
the public cells, the noise of the two releases, and the server's fit from noisy cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fedseg.client.lifetime import (
    LifetimeRequest,
    PurchaseSummaries,
    lifetime_histograms,
    lifetime_sums,
    purchase_summaries,
)
from fedseg.client.node import BadRequest
from fedseg.privacy import releases
from fedseg.privacy.published import lifetime
from fedseg.server import lifetime_cells
from fedseg.server.lifetime_value import (
    LifetimeModels,
    denoised,
    fit_bgnbd,
    fit_gamma_gamma,
    publish,
    purchase_bounds,
)
from fedseg.simulations.data.datasets import CDNOW_AS_OF, load_cdnow
from scipy import stats

# lifetimes 0.11.3 on CDNOW customers 1-500, summaries with freq="D" and
# observation_period_end=1998-07-01 (the run's as-of): BetaGeoFitter().fit(...).params_,
# GammaGammaFitter().fit(...) on the 264 with a repeat purchase of positive value, and the
# conditional figures of customers 3, 5 and 11 (rows 2, 4, 10).
LIFETIMES_BGNBD = (0.27714977, 35.36519533, 0.23130385, 0.69881091)
LIFETIMES_GAMMA_GAMMA = (4.95652128, 4.00071041, 22.49194414)
ROWS = [2, 4, 10]
LIFETIMES_PURCHASES_365 = (2.91715712, 2.96218415, 1.60952083)
LIFETIMES_ALIVE = (0.93659756, 0.48846204, 0.83481049)
LIFETIMES_ORDER_VALUE = (28.22131507, 35.71497638, 18.73629044)


@pytest.fixture(scope="module")
def small_cdnow():
    events = load_cdnow(merchants=1).merchants["m0"]
    events = events[events["user_id"] <= 500].reset_index(drop=True)
    ids = [str(i) for i in sorted(events["user_id"].unique())]
    return purchase_summaries(events, ids, CDNOW_AS_OF)


def test_summaries_are_lifetimes_daily_summaries_by_hand():
    """Customer a buys on Jan 1 (twice: one day), Jan 11; b once; c only views."""
    events = pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "c"],
        "timestamp": ["2024-01-01T10:00Z", "2024-01-01T12:00Z", "2024-01-11T00:00Z",
                      "2024-01-05T00:00Z", "2024-01-03T00:00Z"],
        "event": ["purchase", "purchase", "purchase", "purchase", "view"],
        "price": [10.0, 5.0, 7.0, 3.0, np.nan], "quantity": [1, 2, 1, 1, 1],
    })  # fmt: skip
    s = purchase_summaries(events, ["a", "b", "c"], "2024-02-01T00:00Z")
    assert s.x.tolist() == [1, 0, 0] and s.t_x.tolist() == [10, 0, 0]
    assert s.age.tolist() == [31, 27, 0] and s.spend.tolist() == [7, 0, 0]
    assert s.bought.tolist() == [True, True, False]


def test_bgnbd_fit_matches_lifetimes(small_cdnow):
    s = small_cdnow
    params = fit_bgnbd(s.x, s.t_x, s.age, np.ones(len(s.x)))
    np.testing.assert_allclose(params, LIFETIMES_BGNBD, rtol=2e-3)
    x, t_x, age = s.x[ROWS], s.t_x[ROWS], s.age[ROWS]
    np.testing.assert_allclose(
        lifetime.expected_purchases(365, LIFETIMES_BGNBD, x, t_x, age),
        LIFETIMES_PURCHASES_365, rtol=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(
        lifetime.probability_alive(LIFETIMES_BGNBD, x, t_x, age), LIFETIMES_ALIVE, rtol=1e-6
    )


def test_gamma_gamma_fit_matches_lifetimes(small_cdnow):
    s = small_cdnow
    repeat = (s.x > 0) & (s.spend > 0)
    assert repeat.sum() == 264
    params = fit_gamma_gamma(s.x[repeat], s.spend[repeat], np.ones(int(repeat.sum())))
    np.testing.assert_allclose(params, LIFETIMES_GAMMA_GAMMA, rtol=2e-3)
    np.testing.assert_allclose(
        lifetime.expected_order_value(LIFETIMES_GAMMA_GAMMA, s.x[ROWS], s.spend[ROWS]),
        LIFETIMES_ORDER_VALUE, rtol=1e-6,
    )  # fmt: skip


def test_lifetimes_itself_agrees_when_importable(small_cdnow):
    fitters = pytest.importorskip("lifetimes")  # autograd and dill: dev extras
    s = small_cdnow
    bgf = fitters.BetaGeoFitter().fit(s.x, s.t_x, s.age)
    np.testing.assert_allclose(bgf.params_.to_numpy(), LIFETIMES_BGNBD, rtol=1e-6)


def test_the_cells_by_hand():
    grid = lifetime.LifetimeGrid()
    # x = 0 at T = 100 (age bin 0: [0, 146)): the 'no repeat' column of frequency bin 0.
    # x = 9 (frequency bin 6: 9-13), t_x = 0.9 T (sixth 5 → column 6), T = 800 (top age bin 4).
    cells = grid.purchase_cell(
        np.array([0.0, 9.0]), np.array([0.0, 720.0]), np.array([100.0, 800.0])
    )
    columns, frequencies = grid.recency_bins + 1, len(grid.frequency)
    assert cells.tolist() == [0, (4 * frequencies + 6) * columns + 6]
    x, t_x, age, possible = grid.purchase_representatives()
    assert possible[cells].all() and x[cells[1]] == 11.0 and age[cells[1]] == 657.0
    assert t_x[cells[1]] == pytest.approx(5.5 / 6 * 657.0)
    assert not possible[1]  # x = 0 with a repeat-purchase column: nobody
    # x = 40 is capped at 30 (top frequency bin 8); m = 600 is in the open top spend bin 11.
    assert grid.spend_cell(np.array([40.0]), np.array([600.0])).tolist() == [8 * 12 + 11]


def _noise(values: dict, mechanism, rng, n: int) -> dict:
    draws = [
        mechanism.release({p: np.zeros_like(v) for p, v in values.items()}, rng) for _ in range(n)
    ]
    return {p: np.concatenate([d[p] for d in draws]) for p in values}


@pytest.mark.parametrize(
    "mechanism",
    [releases.lifetime_histogram_mechanism(3.0), releases.lifetime_sums_mechanism(3.0)],
    ids=["histograms", "sums"],
)
def test_release_noise_is_gaussian_with_the_declared_sigma(mechanism):
    """Mean, variance and kurtosis of 2×10⁵ draws per part; false-alarm rate below 1e-6."""
    rng = np.random.default_rng(11)
    shapes = {p: np.zeros(1000) for p in mechanism.sensitivities}
    noise = _noise(shapes, mechanism, rng, 200)
    z = stats.norm.isf(1e-7)  # per check; a handful of checks stay below 1e-6 together
    for part, sample in noise.items():
        sigma = 3.0 * 1.0 / math.sqrt(mechanism.shares[part])
        assert mechanism.sigmas()[part] == pytest.approx(sigma)
        n = len(sample)
        assert abs(sample.mean()) < z * sigma / math.sqrt(n)
        assert abs(sample.var() / sigma**2 - 1) < z * math.sqrt(2 / n)
        assert abs(stats.kurtosis(sample)) < z * math.sqrt(24 / n)


def test_sums_clip_every_term_to_one_and_the_request_is_checked():
    s = purchase_summaries(
        pd.DataFrame({"user_id": ["a"] * 40, "event": "purchase", "price": 1000.0,
                      "timestamp": pd.date_range("2024-01-01", periods=40, tz="UTC")}),
        ["a"], "2024-03-01T00:00Z",
    )  # fmt: skip
    payload = {
        "bgnbd": np.array(LIFETIMES_BGNBD), "gamma_gamma": np.array(LIFETIMES_GAMMA_GAMMA),
        "horizon": np.array([365.0]), "purchase_bounds": np.array([0.5]),
        "purchase_caps": np.array([1.0]), "value_bounds": np.array([1.0]),
        "value_caps": np.array([2.0]),
    }  # fmt: skip
    sums = lifetime_sums(s, np.array([0]), LifetimeRequest.from_payload(payload, 1))
    assert all(float(v[0]) == 1.0 for p, v in sums.items() if p != "alive"), sums
    with pytest.raises(BadRequest, match="cap must exceed"):
        LifetimeRequest.from_payload({**payload, "purchase_caps": np.array([0.4])}, 1)


def test_cells_fit_near_the_exact_fit(small_cdnow):
    """Noise-free cells of 500 CDNOW customers through the server's fit: the grouped likelihood
    reproduces the per-customer fit's mean forecast for one-time buyers within 6% (+4.5%; the
    likelihood at the cells' representatives gave +10.8%) and for repeat buyers within 3%
    (+0.9%). Cells below 2.5σ are dropped."""
    s, grid = small_cdnow, lifetime.LifetimeGrid()
    counts = np.bincount(grid.purchase_cell(s.x, s.t_x, s.age), minlength=grid.purchase_cells)
    repeat = (s.x > 0) & (s.spend > 0)
    spend = np.bincount(grid.spend_cell(s.x[repeat], s.spend[repeat]), minlength=grid.spend_cells)
    models = LifetimeModels.from_histograms(
        counts.astype(float), spend.astype(float), {"purchases": 0.0, "spend": 0.0}, grid
    )
    exact = lifetime.expected_purchases(365, LIFETIMES_BGNBD, s.x, s.t_x, s.age)
    grouped = lifetime.expected_purchases(365, models.bgnbd, s.x, s.t_x, s.age)
    for buyers, rel in ((s.x == 0, 0.06), (s.x >= 1, 0.03)):
        assert grouped[buyers].mean() == pytest.approx(exact[buyers].mean(), rel=rel)
    assert denoised(np.array([2.4, 2.6]), 1.0).tolist() == [0.0, 2.6]


def test_publish_drops_a_tail_the_noise_explains():
    sums = {
        "purchases": np.array([50.0, 50.0]), "purchases_tail": np.array([1.0, 30.0]),
        "alive": np.array([80.0, 80.0]), "value": np.array([50.0, 50.0]),
        "value_tail": np.array([0.0, 0.0]), "counts": np.array([100.0, 100.0]),
    }  # fmt: skip
    sigmas = dict.fromkeys(sums, 5.0)
    limits = {"purchase_bounds": np.array([1.0, 1.0]), "purchase_caps": np.array([11.0, 11.0]),
              "value_bounds": np.array([10.0, 10.0]), "value_caps": np.array([20.0, 20.0])}  # fmt: skip
    models = LifetimeModels(np.array(LIFETIMES_BGNBD), np.array(LIFETIMES_GAMMA_GAMMA), 200.0)
    rows = publish(models, sums, sigmas, limits, 365.0)["segments"]
    # segment 1: tail 1 < 3σ = 15 → 0; segment 2: (50·1 + 30·10) / 100.
    assert [r["expected_purchases"] for r in rows] == [0.5, 3.5]
    assert [r["p_alive"] for r in rows] == [0.8, 0.8] and rows[0]["expected_value"] == 5.0


@pytest.mark.slow
def test_lifetime_value_through_the_apps_within_the_runs_epsilon(tmp_path):
    """The shipped apps on a small synthetic federation: both releases planned and charged,
    the run within its ε, and report.md carrying the labels, the CLV table and the advice."""
    from fedseg.simulations.data.federation import write_federation
    from fedseg.simulations.data.synthetic import generate_federation
    from fedseg.simulations.experiments.runner import simulate, write_report

    data = write_federation(generate_federation(users=900, merchants=3, seed=2), tmp_path / "d")
    config = {"k": 3, "epsilon": 2.0, "seed": 0, "lifetime-value": True}
    result = simulate(data, config, out_dir=tmp_path / "out", evaluate=False)
    privacy = result.model.privacy
    assert privacy["epsilon"] <= 2.0 + 1e-9
    names = {r["name"] for r in privacy["releases"]}
    assert {releases.LIFETIME_HISTOGRAMS, releases.LIFETIME_SUMS} <= names
    block = result.model.extras["lifetime_value"]
    assert [row["segment"] for row in block["segments"]] == [1, 2, 3]
    assert all(
        row["expected_purchases"] >= 0 and 0 <= row["p_alive"] <= 1 for row in block["segments"]
    )
    report = write_report(result)
    for heading in ("## Standard labels (RFM)", "## Lifetime value", "## What to do"):
        assert heading in report


def test_bounds_follow_the_segments_activity_by_hand():
    """σ = 1, threshold 2: from the fullest bin up while the bins exceed 2; 1.5 × the last
    bin's upper edge over the horizon, between 0.5 and 20."""
    grid = lifetime.LifetimeGrid()  # activity bins [0, .25, .5, 1, 2, 4, 8, 16, ∞)
    activity = np.array([
        [0, 0, 100, 50, 3, 0, 0, 0],  # up to bin [2, 4): 1.5 × 4
        [0, 0, 100, 0, 0, 0, 50, 0],  # a bin apart from the buyers does not count: 1.5 × 1
        [0, 0, 0, 10, 40, 80, 90, 30],  # the run reaches the open top bin: 20
        [100, 1, 0, 0, 0, 0, 0, 0],  # 1.5 × 0.25 → at least 0.5
    ], dtype=float)  # fmt: skip
    bounds = purchase_bounds(activity.ravel(), 1.0, 365.0, grid)
    assert bounds.tolist() == [6.0, 1.5, 20.0, 0.5]
    assert purchase_bounds(activity[:2].ravel(), 1.0, 730.0, grid).tolist() == [12.0, 3.0]
    assert purchase_bounds(activity[:1].ravel(), 60.0, 365.0, grid).tolist() == [1.5]


def test_bounds_cover_each_segments_buyers(small_cdnow):
    """Segments split one-time from repeat buyers, as the RFM segments do: each bound sits
    above nearly all of its segment's expected purchases and near them, so a heavy segment's
    purchases are not left to the tail and a light segment's body is not drowned in noise."""
    s, grid = small_cdnow, lifetime.LifetimeGrid()
    segments = (s.x >= 1).astype(int)
    counts = lifetime_histograms(s, segments, 2, grid)
    assert counts["activity"].sum() == s.bought.sum()
    bounds = purchase_bounds(counts["activity"], 0.0, 365.0, grid)
    g = lifetime.expected_purchases(365, LIFETIMES_BGNBD, s.x, s.t_x, s.age)
    for segment, bound in enumerate(bounds):
        mine = g[s.bought & (segments == segment)]
        assert np.mean(mine > bound) < 0.01, (segment, bound)
        assert bound < 4 * np.quantile(mine, 0.99), (segment, bound)


def test_activity_cells_by_hand():
    """Customers a (x = 0, T = 31: the prior expects 0.90 purchases a year, bin [0.5, 1)) and
    b (x = 4, t_x = 40, T = 41: 9.31, bin [8, 16)), in segments 1 and 0."""
    grid = lifetime.LifetimeGrid()
    s = lifetime_summary(x=[0, 4], t_x=[0, 40], age=[31, 41])
    prior = lifetime.expected_purchases(365, lifetime.ACTIVITY_PRIOR, s.x, s.t_x, s.age)
    assert prior.round(2).tolist() == [0.9, 9.31]
    activity = lifetime_histograms(s, np.array([1, 0]), 2, grid)["activity"].reshape(2, -1)
    assert activity.tolist() == [[0, 0, 0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0, 0, 0]]


def lifetime_summary(*, x, t_x, age) -> PurchaseSummaries:
    n = len(x)
    return PurchaseSummaries(
        x=np.asarray(x, float), t_x=np.asarray(t_x, float), age=np.asarray(age, float),
        spend=np.full(n, 10.0), bought=np.ones(n, bool),
    )  # fmt: skip


def test_cell_probabilities_by_hand():
    """One age bin [0, 20) (T = 10), x = 0 or x ≥ 1, one recency column; r = 1, α = 10: P(x = 0
    | T) = (α / (α + T))^r = 1/2, and the one repeat cell holds the other half."""
    grid = lifetime.LifetimeGrid(frequency=(0, 1), age=(0.0, 20.0), recency_bins=1)
    p = np.exp(lifetime_cells.cell_log_probabilities((1.0, 10.0, 0.5, 2.0), grid))
    # cells: (x = 0, no repeat), (x = 0, column 1: nobody), (x ≥ 1, no repeat: nobody), (x ≥ 1, 1)
    np.testing.assert_allclose(p, [0.5, 0.0, 0.0, 0.5], atol=1e-12)


def test_cell_probabilities_integrate_the_customers_likelihood():
    """A cell holding one x is ∫ L(x, t, T) · t^(x−1)/(x−1)! dt over its recency column, with L
    the per-customer likelihood `lifetimes` maximizes (checked against it above)."""
    from math import factorial

    from scipy.integrate import quad

    grid = lifetime.LifetimeGrid(frequency=(0, 1, 2, 3), age=(0.0, 400.0), recency_bins=3)
    params, T = LIFETIMES_BGNBD, 200.0
    p = np.exp(lifetime_cells.cell_log_probabilities(params, grid))
    columns = grid.recency_bins + 1
    for x in (1, 2):
        for column in (1, 2, 3):

            def density(t, x=x):
                return math.exp(lifetime.bgnbd_log_likelihood(params, x, t, T)) * t ** (x - 1)

            lo, hi = (column - 1) * T / 3, column * T / 3
            expected = quad(density, lo, hi)[0] / factorial(x - 1)
            assert p[x * columns + column] == pytest.approx(expected, rel=1e-7)
    assert p.sum() == pytest.approx(1.0, abs=1e-6)  # every T: the cells add up to 1
