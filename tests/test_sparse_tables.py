"""Small real feature tables (issue 16): sparse and thin columns must not wreck the
standardized space. Hand-computed cases for each rule, then digits through the apps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server import init, lloyd, ranges, standardize


def test_a_kept_run_ends_at_its_outermost_bin_of_two_sigmas():
    mass = np.array([[5.0, 0.0, 100.0, 80.0, 3.0, 4.0]])  # a merged group kept all six
    noisy = np.array([[5.0, -1.0, 100.0, 80.0, 3.0, 4.0]])
    trimmed = ranges.trim_kept_ends(mass, noisy, sigma=10.0)
    np.testing.assert_array_equal(trimmed, [[0.0, 0.0, 100.0, 80.0, 0.0, 0.0]])
    weak = np.array([[5.0, 6.0, 4.0]])  # no bin holds 2σ: nothing to trim by
    np.testing.assert_array_equal(ranges.trim_kept_ends(weak, weak, sigma=10.0), weak)


def test_pure_noise_bins_in_a_merged_group_do_not_carry_the_bound_away():
    """Mass in one bin, pure noise in the seven next to it (a two-decade group at group 8):
    the bounds stay at the data's bin, widened by one."""
    edges = np.arange(17.0)[None, :]
    noisy = np.array([[0.0] * 4 + [500.0] + [12.0, -9.0, 15.0, 11.0, -4.0, 14.0, 13.0] + [0.0] * 4])
    lower, upper = ranges.bounds_from_histograms(noisy, edges, 5.0, tail=0.001, widen=1)
    assert (lower[0], upper[0]) == (3.0, 6.0)


def test_a_spike_in_one_bin_is_degenerate_two_even_bins_are_not():
    edges = np.array([[0.0, 1, 2, 3, 4]] * 3)
    counts = np.array(
        [
            [0.0, 100, 0, 0],  # spread 0 < 1/√12
            [0.0, 50, 50, 0],  # mids 1.5 and 2.5: spread 0.5 > 1/√12
            [0.0, 30, 0, 0],  # a spike holding 30 of ~100 customers: thin, not degenerate
        ]
    )
    lower, upper = np.array([0.0, 0, 0]), np.array([4.0, 4, 4])
    degenerate = ranges.degenerate_columns(counts, edges, 0.0, lower, upper)
    np.testing.assert_array_equal(degenerate, [True, False, False])


def test_a_degenerate_column_is_confined_to_its_found_bounds():
    """Column 0 ordinary (unknown bounds: unclipped); column 1 degenerate with a found box of
    [0, 0.2] and a collapsed scale: clipped to the box, scale its half-width 0.1."""
    found = FeatureScaling(
        names=("a", "b"), log=(False, False), lower=(-1.0, 0.0), upper=(1.0, 0.2),
        mean=(0.0, 0.05), scale=(0.5, 1e-4),
    )  # fmt: skip
    out = standardize.clustering_scaling(
        found, np.array([np.nan, np.nan]), np.array([np.nan, np.nan]),
        degenerate=np.array([False, True]),
    )  # fmt: skip
    assert out.lower == (-math.inf, 0.0) and out.upper == (math.inf, 0.2)
    assert out.scale == (0.5, 0.1) and out.mean == (0.0, 0.05)
    rare = out.transform(np.array([[0.0, 21.0]]))  # a rare large pixel value
    assert rare[0, 1] == pytest.approx((0.2 - 0.05) / 0.1)


def test_projection_keeps_only_eigenvalues_above_the_noise_edge():
    """cov_z = diag(0.5, 0.1) (n = 1, box [-1, 1], scale 1); entry noise σ = 0.1 gives
    w = σ/√2 and edge 2w√2 = 0.2: only the first direction remains, with variance 0.3."""
    scaling = FeatureScaling(
        names=("a", "b"), log=(False, False), lower=(-1.0, -1.0), upper=(1.0, 1.0),
        mean=(0.0, 0.0), scale=(1.0, 1.0),
    )  # fmt: skip
    noisy = {"count": np.array([1.0]), "second": np.diag([0.5, 0.1])}
    basis, variances = standardize.projection_from_moments(noisy, scaling, 2, sigma_second=0.1)
    assert basis.shape == (2, 1) and abs(basis[0, 0]) == pytest.approx(1.0)
    np.testing.assert_allclose(variances, [0.3])
    assert standardize.projection_from_moments(noisy, scaling, 2, sigma_second=1.0) == (None, None)


def test_location_variance_of_a_shape_split_at_its_centre():
    """Edges (−∞, 0, ∞), μ = 0, s = 1: ∂t/∂μ = ∓φ(0), so the information is
    n̂²·2φ(0)²/σ² = n̂²/(πσ²); n̂ = 100, σ = 10 → variance π/100."""
    edges = np.array([[-1e13, 0.0, 1e13]])
    var = ranges.location_variance(edges, np.array([0.0]), np.array([1.0]), np.array([100.0]), 10.0)
    assert var[0] == pytest.approx(math.pi / 100)


def test_mean_is_the_inverse_variance_average_of_moments_and_histogram():
    """Box [-6, 6], n = 100, Σu = 50: the moments' mean is 3 with variance (10·6/100)² = 0.36;
    the histogram's location 0 has variance 0.36 too, so the mean is 1.5."""
    noisy = {"count": np.array([100.0]), "sum": np.array([50.0]), "square": np.array([30.0])}
    kwargs = {"names": ("a",), "log": (False,), "sigma_second": 0.0}
    moments_only = standardize.scaling_from_moments(
        noisy, np.array([-6.0]), np.array([6.0]), **kwargs
    )
    assert moments_only.mean[0] == pytest.approx(3.0)
    both = standardize.scaling_from_moments(
        noisy, np.array([-6.0]), np.array([6.0]), sigma_sum=10.0,
        location=np.array([0.0]), location_var=np.array([0.36]), **kwargs,
    )  # fmt: skip
    assert both.mean[0] == pytest.approx(1.5)


def test_first_lloyd_radius_shrinks_only_when_noise_would_dominate():
    """σ₁ = 2, d = 4, 40 customers per cluster: error per unit radius 2·2/40 = 0.1, so the
    factor 0.08/0.1 = 0.8; with 4,000 per cluster it would be 80, capped at 1.5; with 10 per
    cluster 0.2, floored at 0.5."""
    kwargs = {"dim": 4, "noise_to_spread": 0.08}
    assert lloyd.noise_limited_radius(3.0, 2.0, per_cluster=40, **kwargs) == pytest.approx(2.4)
    assert lloyd.noise_limited_radius(3.0, 2.0, per_cluster=4000, **kwargs) == pytest.approx(4.5)
    assert lloyd.noise_limited_radius(3.0, 2.0, per_cluster=10, **kwargs) == pytest.approx(1.5)


def test_a_seed_cell_must_hold_enough_customers_for_its_noise():
    """σ_sums = 10, d = 4, r₀ = 2, error at most 0.5·r₀: count ≥ 10·2/1 = 20."""
    assert init.clean_cell_count(10.0, 4, 2.0, 0.5) == pytest.approx(20.0)


def test_cell_steps_are_shrunk_by_the_james_stein_factor():
    """σ = 1, d = 2. Cell 0: count 1, step (3, 4): noise 2/1 = 2, ‖step‖² = 25 → factor
    0.92. Cell 1: count 1, step (1, 0): noise 2 > 1 → factor 0, stays at its candidate.
    Cell 2: count 100: noise 2e-4 → the step (0, 2) is kept to 1e-4."""
    before = np.zeros((3, 2))
    after = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    out = init.shrink_steps(before, after, np.array([1.0, 1.0, 100.0]), sigma_sums=1.0)
    np.testing.assert_allclose(out, [[2.76, 3.68], [0.0, 0.0], [0.0, 2.0 * (1 - 5e-5)]])


def test_digits_through_the_apps_keeps_a_sane_standardized_space(tmp_path):
    """scikit-learn's digits (1,797 × 61 after dropping constant pixels; 16 columns are 0
    for all but a handful of customers), 5 merchants, no declared bounds, ε = 8, local
    noise, through the ServerApp and ClientApps. Before the sparse-column rules the found
    scale of those columns collapsed onto the dominant value and the cost ratio was ~10³."""
    import pandas as pd
    from fedseg.privacy.published.segments import nearest_centre
    from fedseg.simulations.experiments.runner import simulate
    from fedseg.simulations.harness import data
    from fedseg.simulations.harness.evaluate import Reference, score

    hd = data.sklearn_table(name="digits", seed=0)
    root = tmp_path / "federation"
    (root / "merchants").mkdir(parents=True)
    for m, part in enumerate(hd.parts):
        table = pd.DataFrame(part, columns=list(hd.schema.names))
        table.insert(0, "user_id", [f"m{m}-u{i}" for i in range(len(part))])
        table.to_parquet(root / "merchants" / f"merchant_{m:04d}.parquet", index=False)
    (root / "schema.toml").write_text(hd.schema.to_toml())
    (root / "federation.toml").write_text('features = "schema.toml"\n')
    config = {"k": hd.k, "epsilon": 8.0, "delta": 1e-6, "seed": 0, "noise": "local"}
    model = simulate(root, config, out_dir=tmp_path / "out", evaluate=False).model

    scaling, centres = model.scaling, model.centres_standardized
    z = scaling.transform(hd.pooled)
    assert np.abs(z).max() < 50  # no column's rare values thousands of scales out
    ref = Reference.fit(hd.pooled, hd.schema, hd.k, seed=0)
    model_space = centres * np.asarray(scaling.scale) + np.asarray(scaling.mean)
    metrics = score(ref, model_space, nearest_centre(z, centres))
    assert metrics["cost_ratio"] < 1.6  # 1.19 on this seed; diffprivlib (central) 1.57
