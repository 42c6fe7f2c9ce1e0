"""Issue 16's algorithm pieces: schema, range finding, displacement steps, profiles, noise.

Tiny hand-computed cases, and statistical tests (false-alarm rate ≤ 1e-6) where noise is
claimed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fedseg.client.statistics import clipped_moments, displacement_statistics, segment_value_sums
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.protocol.builtin import cdnow_schema, numeric_table_schema
from fedseg.privacy.protocol.schema import SchemaError, load_schema, schema_from_dict
from fedseg.server import lloyd, noise_report, profiles, ranges
from fedseg.simulations.harness.channel import Channel

# -- schema -----------------------------------------------------------------------------------


def test_schema_toml_round_trip(tmp_path):
    schema = cdnow_schema()
    path = tmp_path / "features.toml"
    path.write_text(schema.to_toml())
    loaded = load_schema(path)
    assert loaded.names == schema.names
    assert loaded.feature("spend").upper is None and loaded.feature("spend").lower == 0.0
    assert loaded.digest() == schema.digest()


def test_schema_categorical_expands_to_a_share_group():
    schema = schema_from_dict(
        {"feature": [{"name": "tier", "kind": "categorical", "categories": ["a", "b", "c"]}]}
    )
    assert schema.names == ("tier=a", "tier=b", "tier=c")
    assert schema.groups() == {"tier": [0, 1, 2]}


def test_a_column_that_disagrees_gets_one_line_naming_file_and_column():
    schema = numeric_table_schema(["a", "b"])
    with pytest.raises(SchemaError, match=r"^shop\.csv: column 'b' required by .* is missing$"):
        schema.check_columns(["user_id", "a"], source="shop.csv")
    with pytest.raises(SchemaError, match=r"^shop\.csv: column 'c' is not in the feature schema"):
        schema.check_columns(["a", "b", "c"], source="shop.csv")


def test_schema_rejects_unknown_keys_and_log_without_lower(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[feature]]\nname = "x"\nlog = true\nlower = "unknown"\n')
    with pytest.raises(SchemaError, match="bad.toml: feature 'x': a log-scale feature"):
        load_schema(path)
    with pytest.raises(SchemaError, match="unknown key 'colour'"):
        schema_from_dict({"feature": [{"name": "x", "colour": 1}]})


# -- range finding ----------------------------------------------------------------------------


def test_range_edges_geometric_for_unknown_sides():
    edges = ranges.range_edges(cdnow_schema(), 48)
    assert edges.shape == (5, 49)
    assert np.all(np.diff(edges, axis=1) > 0)
    assert edges[0, 0] == 0 and edges[0, -1] == 730  # recency: public bounds, linear
    assert edges[2, 0] == 0 and edges[2, -1] == pytest.approx(np.log1p(1e6))  # spend: log1p
    two_sided = ranges.range_edges(numeric_table_schema(["x"]), 48)[0]
    np.testing.assert_allclose(two_sided, -two_sided[::-1])


def test_bounds_from_exact_histogram():
    edges = np.array([[0.0, 1, 2, 3, 4, 5]])
    counts = np.array([[0.0, 10, 80, 10, 0]])
    lower, upper = ranges.bounds_from_histograms(counts, edges, 0.0, tail=0.0, widen=0)
    assert (lower[0], upper[0]) == (1.0, 4.0)
    lower, upper = ranges.bounds_from_histograms(counts, edges, 0.0, tail=0.0, widen=1)
    assert (lower[0], upper[0]) == (0.0, 5.0)


def test_matched_shape_finds_the_scale_of_a_thin_column():
    """200 customers of scale 3 in geometric bins, per-bin noise σ = 10: no bin is
    significant, but the matched shape's scale is right within a factor 1.6."""
    rng = np.random.default_rng(0)
    schema = numeric_table_schema(["a", "b", "c", "d"])
    edges = ranges.range_edges(schema, 96)
    x = rng.normal(0, 3, size=(200, 4))
    exact = np.stack([np.histogram(np.clip(x[:, j], -1e6, 1e6), edges[j])[0] for j in range(4)])
    _, scale, amplitude = ranges.matched_location_scale(
        exact + rng.normal(0, 10, exact.shape), edges
    )
    assert np.all((scale > 3 / 1.6) & (scale < 3 * 1.6))
    assert np.all((amplitude > 100) & (amplitude < 400))


def test_the_coarse_shape_grid_one_scale_at_a_time_equals_all_at_once():
    """The coarse fit builds each scale's masses apart (speed): every t·h and t·t is the
    same float as from the whole (scales × μ × bins) array at once."""
    rng = np.random.default_rng(1)
    edges = ranges.range_edges(numeric_table_schema(["a", "b"]), 40)[0]
    h = rng.normal(50, 20, len(edges) - 1)
    th, tt, s_grid, mu_grid = ranges._coarse_fit(h, edges, grid=12, max_bin_share=0.6)
    finite = np.clip(edges, -1e12, 1e12)
    t = ranges._shape_masses(finite, finite, s_grid)
    t = np.where(t.max(axis=2, keepdims=True) <= 0.6, t, np.nan)
    assert np.array_equal(th, t @ h, equal_nan=True)
    assert np.array_equal(tt, np.sum(t * t, axis=2), equal_nan=True)
    assert th.shape == (12, len(edges)) and np.isfinite(th).any()


# -- displacement steps -----------------------------------------------------------------------


def test_displacement_statistics_by_hand():
    z = np.array([[0.0, 0.0], [3.0, 0.0], [10.0, 0.0], [10.0, 4.0]])
    centres = np.array([[1.0, 0.0], [10.0, 0.0]])
    edges = np.array([0.0, 1.5, 2.5, np.inf])
    out = displacement_statistics(z, centres, radius=1.0, distance_edges=edges)
    # cluster 0: displacements (-1, 0) and (2, 0) → clipped to (1, 0); cluster 1: (0, 0), (0, 4)→(0, 1)
    np.testing.assert_allclose(out["sums"], [[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(out["counts"], [2, 2])
    np.testing.assert_allclose(out["distances"], [2, 1, 1])  # distances 1, 2, 0, 4


def test_displacement_update_keeps_thin_clusters():
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    new, kept = lloyd.displacement_update(
        centres, np.array([[10.0, 0.0], [1.0, 1.0]]), np.array([10.0, 0.5]), min_count=2.0
    )
    np.testing.assert_allclose(new, [[1.0, 0.0], [5.0, 5.0]])
    assert kept.tolist() == [True, False]


def test_symmetric_cluster_is_a_fixed_point_at_any_radius():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200_000, 3)) + 5.0
    edges = lloyd.distance_edges(3)
    centre = np.array([[4.0, 5.5, 5.0]])
    for _ in range(40):
        out = displacement_statistics(z, centre, radius=0.5, distance_edges=edges)
        centre, _ = lloyd.displacement_update(centre, out["sums"], out["counts"], min_count=1)
    np.testing.assert_allclose(centre, [[5.0, 5.0, 5.0]], atol=0.02)


def test_moments_sensitivities_hold_for_a_box_corner():
    u = np.ones((1, 4))
    stats = clipped_moments(u, gram=True)
    assert np.linalg.norm(stats["sum"]) == pytest.approx(2.0)  # √d
    assert np.linalg.norm(stats["square"]) == pytest.approx(2.0)  # √d
    assert np.linalg.norm(stats["second"]) == pytest.approx(4.0)  # d


# -- channel noise (statistical) --------------------------------------------------------------


@pytest.mark.parametrize("noise, copies", [("local", 20), ("distributed", 20 / 18)])
def test_channel_noise_variance(noise, copies):
    """Summed noise of 20 merchants: variance 20σ² locally, σ²·m/m' distributed (m' = 18).
    4,000 draws: the sample variance is within 15 % with probability > 1 − 1e-6."""
    parts = [np.zeros((1, 1))] * 20
    channel = Channel(parts, noise, np.random.default_rng(2))
    mechanism = GaussianMechanism(1.0, {"v": 1.0})
    draws = channel.release("v", mechanism, lambda x: {"v": np.zeros(4000)})["v"]
    assert np.var(draws) == pytest.approx(copies, rel=0.15)
    assert channel.aggregate_sigmas(mechanism)["v"] == pytest.approx(math.sqrt(copies))


# -- profiles and honest output ---------------------------------------------------------------


def test_profiles_are_member_means_in_original_units_and_shares_sum_to_one():
    x = np.array([[100.0, 0.2, 0.8], [300.0, 0.6, 0.4], [5.0, 1.0, 0.0]])
    lower, upper = np.array([0.0, 0.0, 0.0]), np.array([1000.0, 1.0, 1.0])
    out = segment_value_sums(x, np.array([0, 0, 1]), 2, lower=lower, upper=upper)
    means = profiles.profile_means(out["sums"], out["counts"], lower, upper, groups={"g": [1, 2]})
    np.testing.assert_allclose(means, [[200.0, 0.4, 0.6], [5.0, 1.0, 0.0]])
    np.testing.assert_allclose(means[:, 1:].sum(axis=1), 1.0)


def test_noise_assessment_names_only_clean_segments_and_says_what_to_change():
    result = noise_report.assess_noise(
        np.array([5000.0, 40.0]), sigma_sums=20.0, sigma_counts=5.0, dim=9, spread=2.0,
        noise="local", merchants=16,
    )  # fmt: skip
    assert result.nameable.tolist() == [True, False]
    (warning,) = result.warnings
    assert "ε" in warning and "fewer segments" in warning and "distributed noise" in warning
    quiet = noise_report.assess_noise(
        np.array([5000.0]), sigma_sums=1.0, sigma_counts=1.0, dim=9, spread=2.0,
        noise="local", merchants=16,
    )  # fmt: skip
    assert quiet.warnings == () and quiet.nameable.all()


def _moments(n, sum_u, square_u):
    return {"count": np.array([n]), "sum": np.array(sum_u), "square": np.array(square_u)}


def test_unresolved_variance_counts_the_mean_noise_and_never_trusts_a_partial_histogram():
    from fedseg.server.standardize import scaling_from_moments

    # Box [0, 1] (centre 0.5, half 0.5); n = 100; ū = -0.8, noisy Σu²/n = 0.65 → v = 0.01.
    # ν = √(σ₂² + (2·0.8·σ₁)²)/n with σ₂ = 1, σ₁ = 2.5 → √(1 + 16)/100 = 0.0412: v < 3ν.
    noisy = _moments(100.0, [-80.0, -80.0], [65.0, 65.0])
    lower, upper = np.zeros(2), np.ones(2)
    kwargs = dict(names=("a", "b"), log=(False, False), sigma_second=1.0, sigma_sum=2.5)
    fallback = np.array([0.01, 0.01])  # the histogram's scale: var_u = (0.01/0.5)² = 0.0004
    scaling = scaling_from_moments(
        noisy, lower, upper, **kwargs, fallback_scale=fallback,
        fallback_whole=np.array([True, False]),
    )  # fmt: skip
    nu = math.sqrt(17) / 100
    # a: the histogram saw the whole distribution, its scale stands
    assert scaling.scale[0] == pytest.approx(0.01)
    # b: it did not; the variance is at least v + ν
    assert scaling.scale[1] == pytest.approx(0.5 * math.sqrt(0.01 + nu))
    assert scaling.mean[1] == pytest.approx(0.5 - 0.5 * 0.8)
    # Without the mean's noise (σ₁ = 0): ν = 0.01, v is still below 3ν.
    alone = scaling_from_moments(
        noisy, lower, upper, **{**kwargs, "sigma_sum": 0.0}, fallback_scale=fallback,
        fallback_whole=np.array([False, False]),
    )  # fmt: skip
    assert alone.scale[1] == pytest.approx(0.5 * math.sqrt(0.01 + 0.01))


def test_a_resolved_variance_is_taken_as_it_is():
    from fedseg.server.standardize import scaling_from_moments

    noisy = _moments(10_000.0, [0.0], [2_500.0])  # v = 0.25, ν = √(1 + 0)/10⁴
    scaling = scaling_from_moments(
        noisy, np.array([-2.0]), np.array([2.0]), names=("a",), log=(False,),
        sigma_second=1.0, sigma_sum=1.0, fallback_scale=np.array([0.1]),
        fallback_whole=np.array([False]),
    )  # fmt: skip
    assert scaling.scale[0] == pytest.approx(2.0 * 0.5)


def test_projected_candidates_lie_on_the_gaussians_shell():
    from fedseg.server import init

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((20, 4)))[0]  # (d = 20, p = 4), orthonormal
    variances = np.array([4.0, 1.0, 0.25, 0.01])
    cells = init.gaussian_candidates(500, 20, rng, basis=basis, variances=variances)
    y = cells @ basis / np.sqrt(variances)  # back to the standard Gaussian's coordinates
    assert np.allclose(np.linalg.norm(y, axis=1), 2.0)  # √p, every one
    assert np.allclose(cells, y * np.sqrt(variances) @ basis.T)  # inside the subspace
    assert abs(np.mean(y[:, 0])) < 0.2  # directions still uniform (mean ≈ 0, std 1)
    assert np.std(y[:, 0]) == pytest.approx(1.0, abs=0.1)


def test_no_candidate_is_a_hub_for_many_clusters_in_high_dimension():
    """64 clusters in the 64 dimensions of their own projection (Google's k = 64 layout):
    with N(0, Σ) candidates a few small-norm ones were the nearest to 3–5 clusters each."""
    from fedseg.privacy.published.segments import nearest_centre
    from fedseg.server import init

    rng = np.random.default_rng(3)
    p = 64
    centres = rng.standard_normal((p, p))
    centres *= math.sqrt(p) / np.linalg.norm(centres, axis=1, keepdims=True)
    cells = init.gaussian_candidates(1280, p, rng, basis=np.eye(p), variances=np.ones(p))
    captured = np.bincount(nearest_centre(centres, cells), minlength=len(cells))
    assert captured.max() <= 2, np.bincount(captured)


def test_splitting_a_cell_parts_two_clusters_blended_in_it():
    from fedseg.privacy.published.segments import nearest_centre
    from fedseg.server import init

    rng = np.random.default_rng(1)
    p = 64
    u = rng.standard_normal(p)
    u /= np.linalg.norm(u)
    c1, c2 = 7 * u, -7 * u  # two tight clusters whose one cell's mean is their midpoint 0
    points = np.vstack([c1 + 0.015 * rng.standard_normal((200, p)),
                        c2 + 0.015 * rng.standard_normal((200, p))])  # fmt: skip
    parted = 0
    for _ in range(20):
        halves = init.split_cells(np.zeros((1, p)), rng, basis=np.eye(p))
        assert halves.shape == (2, p)
        assert np.allclose(halves.mean(axis=0), 0.0)  # the bisector runs through the mean
        side = nearest_centre(points, halves)
        parted += len(set(side[:200])) == 1 and len(set(side[200:])) == 1 and side[0] != side[-1]
    assert parted >= 19  # |u·v| ≳ 0.002 is enough; a random v gives ~1/8


def test_a_projected_initialization_plans_one_more_round_in_the_same_share():
    from fedseg.privacy import releases
    from fedseg.server.budget import planned_kinds
    from fedseg.server.config import SegmentationConfig

    cfg = SegmentationConfig()
    flat = {name: (share, n) for name, share, n in planned_kinds(cfg)}
    projected = {name: (share, n) for name, share, n in planned_kinds(cfg, projected=True)}
    assert projected[releases.INIT] == (flat[releases.INIT][0], cfg.init_rounds + 1)
    assert {k: v for k, v in projected.items() if k != releases.INIT} == {
        k: v for k, v in flat.items() if k != releases.INIT
    }
