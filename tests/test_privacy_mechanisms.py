"""Gaussian mechanism: noise scale, distribution, seeding; clipping and its sensitivity."""

import math

import numpy as np
import pytest
from fedseg.client.statistics import displacement_statistics
from fedseg.privacy.mechanisms import (
    GaussianMechanism,
    MechanismError,
    cap_contributions,
    capped_histogram,
    clip_rows_l2,
    histogram_sensitivity,
)
from fedseg.privacy.releases import displacement_mechanism
from scipy import stats

FALSE_ALARM = 1e-6


def test_sigmas_hand_computed():
    mech = GaussianMechanism(2.0, {"sums": 3.0, "counts": 1.0}, {"sums": 0.64, "counts": 0.36})
    assert mech.sigmas() == pytest.approx({"sums": 2.0 * 3.0 / 0.8, "counts": 2.0 / 0.6})
    equal = GaussianMechanism(1.0, {"a": 1.0, "b": 2.0})
    assert equal.sigmas() == pytest.approx({"a": math.sqrt(2), "b": 2 * math.sqrt(2)})


def test_joint_release_has_the_declared_noise_multiplier():
    """sum_p (Delta_p / sigma_p)^2 == 1 / z^2: the joint release is a z-Gaussian mechanism."""
    mech = GaussianMechanism(
        1.7, {"sums": 0.5, "counts": 1.0, "x": 4.0}, {"sums": 0.2, "counts": 0.5, "x": 0.3}
    )
    sigmas = mech.sigmas()
    total = sum((mech.sensitivities[p] / sigmas[p]) ** 2 for p in sigmas)
    assert total == pytest.approx(1 / 1.7**2)


def test_ks_test_on_5000_draws():
    mech = GaussianMechanism(1.3, {"v": 2.0})
    out = mech.release({"v": np.full(5000, 7.0)}, np.random.default_rng(11))["v"]
    sigma = mech.sigmas()["v"]
    assert stats.kstest(out, "norm", args=(7.0, sigma)).pvalue > FALSE_ALARM


def test_mean_and_variance_on_2e5_draws():
    mech = GaussianMechanism(0.8, {"sums": 5.0, "counts": 1.0})
    values = {"sums": np.zeros((100_000, 2)), "counts": np.zeros(200_000)}
    out = mech.release(values, np.random.default_rng(12))
    for part, sigma in mech.sigmas().items():
        noise = out[part].ravel()
        assert noise.var() == pytest.approx(sigma**2, rel=0.02)  # SE 0.32%: 6 SE
        assert abs(noise.mean()) < 5.5 * sigma / math.sqrt(noise.size)  # two-sided p < 1e-7


def test_same_seed_same_output_no_seed_different():
    mech = GaussianMechanism(1.0, {"v": 1.0})
    values = {"v": np.arange(10.0)}
    a = mech.release(values, np.random.default_rng(3))["v"]
    b = mech.release(values, np.random.default_rng(3))["v"]
    c = mech.release(values, np.random.default_rng())["v"]
    d = mech.release(values, np.random.default_rng())["v"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(c, d)


def test_integer_inputs_get_noise_and_float64():
    out = GaussianMechanism(1.0, {"counts": 1.0}).release(
        {"counts": np.array([3, 4, 5], dtype=np.int64)}, np.random.default_rng(0)
    )["counts"]
    assert out.dtype == np.float64
    assert not np.all(out == np.round(out))


def test_zero_noise_multiplier_returns_values_unchanged():
    out = GaussianMechanism(0.0, {"v": 1.0}).release({"v": [1, 2]}, np.random.default_rng(0))
    np.testing.assert_array_equal(out["v"], [1.0, 2.0])


@pytest.mark.parametrize(
    "bad",
    [
        lambda: GaussianMechanism(-1.0, {"v": 1.0}),
        lambda: GaussianMechanism(math.inf, {"v": 1.0}),
        lambda: GaussianMechanism(1.0, {}),
        lambda: GaussianMechanism(1.0, {"v": 0.0}),
        lambda: GaussianMechanism(1.0, {"v": 1.0}, {"w": 1.0}),
        lambda: GaussianMechanism(1.0, {"v": 1.0, "w": 1.0}, {"v": 0.5, "w": 0.6}),
        lambda: GaussianMechanism(1.0, {"v": 1.0}).release({"w": [1.0]}, np.random.default_rng()),
        lambda: GaussianMechanism(1.0, {"v": 1.0}).release(
            {"v": [np.nan]}, np.random.default_rng()
        ),
        lambda: clip_rows_l2(np.ones(3), 1.0),
        lambda: clip_rows_l2(np.ones((2, 2)), 0.0),
    ],
)
def test_bad_input_is_one_clear_value_error(bad):
    with pytest.raises(MechanismError):
        bad()


def test_clip_rows_hand_computed():
    x = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    np.testing.assert_allclose(clip_rows_l2(x, 1.0), [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    np.testing.assert_array_equal(clip_rows_l2(x, math.inf), x)


def _dataset(rng):
    n, d, k = int(rng.integers(1, 60)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
    x = rng.normal(0, rng.uniform(0.1, 3.0), size=(n, d))
    outlier = int(rng.integers(n))
    x[outlier] *= 1000.0
    return x, rng.integers(0, k, size=n), k, outlier


def test_removing_one_customer_moves_displacement_statistics_by_at_most_the_bound():
    """The merchant's displacement clipping and statistics against the declared
    sensitivities of privacy/releases.py, with an outlier a thousand times out."""
    rng = np.random.default_rng(2024)
    for trial in range(1000):
        x, _, k, outlier = _dataset(rng)
        d = x.shape[1]
        radius = float(rng.uniform(0.1, 5.0))
        centres = rng.normal(size=(k, d))
        edges = np.concatenate([[0.0], np.geomspace(0.01, 10, 9), [np.inf]])
        mech = displacement_mechanism(0.0, radius=radius, dim=d)
        gone = outlier if trial % 2 else int(rng.integers(len(x)))
        keep = np.arange(len(x)) != gone
        full = displacement_statistics(x, centres, radius=radius, distance_edges=edges)
        less = displacement_statistics(x[keep], centres, radius=radius, distance_edges=edges)
        for part, bound in mech.sensitivities.items():
            assert np.linalg.norm(full[part] - less[part]) <= bound * (1 + 1e-12)


def test_contribution_cap_bounds_each_user():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n_users, n_bins, cap = (
            int(rng.integers(1, 20)),
            int(rng.integers(1, 15)),
            int(rng.integers(1, 5)),
        )
        users = rng.integers(0, n_users, size=int(rng.integers(1, 300)))
        bins = rng.integers(0, n_bins, size=users.size)
        keep = cap_contributions(users, bins, max_bins=cap, rng=rng)
        hist = np.bincount(bins[keep], minlength=n_bins).astype(float)
        for user in np.unique(users):
            mine = keep & (users == user)
            assert (
                len(np.unique(bins[mine]))
                == mine.sum()
                == min(cap, len(np.unique(bins[users == user])))
            )
            without = np.bincount(bins[keep & (users != user)], minlength=n_bins)
            assert np.linalg.norm(hist - without) <= histogram_sensitivity(cap) + 1e-12


def test_capped_histogram_hand_computed():
    users = np.array(["a", "a", "a", "b", "c", "c"])
    bins = np.array([0, 0, 1, 1, 2, 2])
    hist = capped_histogram(users, bins, n_bins=4, max_bins=2, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(hist, [1.0, 2.0, 1.0, 0.0])
    assert hist.dtype == np.float64
