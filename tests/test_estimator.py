"""``fedseg.DPKMeans``: a scikit-learn estimator whose ``fit`` is the federation's DP fit,
run in process through the real apps; names and clones behave as scikit-learn's do."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fedseg import DPKMeans
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

CENTRES = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 5.0], [0.0, 10.0, -5.0]])


def blobs(n_per_centre: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CENTRES)), n_per_centre)
    x = CENTRES[labels] + rng.normal(scale=1.0, size=(len(labels), CENTRES.shape[1]))
    order = rng.permutation(len(labels))
    return pd.DataFrame(x[order], columns=["visits", "basket", "tenure"]), labels[order]


@pytest.fixture(scope="module")
def fitted():
    x, labels = blobs()
    halves = [x.iloc[: len(x) // 2], x.iloc[len(x) // 2 :]]  # two merchants
    return DPKMeans(3, epsilon=1.0, random_state=0).fit(halves), x, labels


def test_fit_is_a_private_federated_fit_within_its_epsilon(fitted):
    estimator, x, labels = fitted
    assert estimator.epsilon_ <= 1.0 + 1e-9
    names = {r["name"] for r in estimator.model_.privacy["releases"]}
    assert {"init_displacements", "cluster_displacements"} <= names  # the federation's own
    assert 1 <= estimator.n_iter_ <= 4 and estimator.cluster_centers_.shape == (3, 3)
    assert adjusted_rand_score(labels, estimator.labels_) > 0.9  # well-separated blobs
    nearest = np.linalg.norm(estimator.cluster_centers_[:, None] - CENTRES[None], axis=2).min(1)
    assert nearest.max() < 1.5  # each centre near a true one, in the input's units


def test_fitted_attributes_follow_scikit_learn(fitted):
    estimator, x, _ = fitted
    assert list(estimator.feature_names_in_) == ["visits", "basket", "tenure"]
    assert estimator.n_features_in_ == 3
    np.testing.assert_array_equal(estimator.predict(x), estimator.labels_)
    distances = estimator.transform(x)
    np.testing.assert_array_equal(distances.argmin(axis=1), estimator.labels_)
    assert estimator.inertia_ == pytest.approx(float((distances.min(axis=1) ** 2).sum()))


def test_reordered_columns_are_refused_not_mislabelled(fitted):
    estimator, x, _ = fitted
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        estimator.predict(x[["tenure", "visits", "basket"]])


def test_clone_gives_the_same_unfitted_private_estimator(fitted):
    copy = clone(fitted[0])
    assert copy.get_params() == fitted[0].get_params()
    assert not hasattr(copy, "model_") and copy.epsilon == 1.0


def test_a_published_model_refits_with_privacy_never_without(fitted, tmp_path):
    estimator, x, _ = fitted
    path = estimator.model_.save(tmp_path / "model.json")
    published = DPKMeans.from_model(path)
    np.testing.assert_array_equal(published.predict(x.to_numpy()), estimator.labels_)
    refit = published.fit(x.to_numpy())
    assert math.isfinite(refit.epsilon_) and refit.epsilon_ <= estimator.epsilon + 1e-9


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_clusters": 1}, "n_clusters must be an integer of at least 2, got 1"),
        ({"n_clusters": 500}, "n_samples=3 should be >= n_clusters=500"),
    ],
)
def test_mistakes_are_one_clear_error_before_any_release(params, message):
    with pytest.raises(ValueError, match=message):
        DPKMeans(**params).fit(np.zeros((3, 2)))


def test_public_bounds_become_the_clip_bounds(fitted):
    _, x, _ = fitted
    estimator = DPKMeans(3, epsilon=1.0, bounds=(-20.0, [20.0, 20.0, 30.0]), random_state=0)
    scaler = estimator.fit(x).model_.scaling
    assert scaler.lower == (-20.0, -20.0, -20.0) and scaler.upper == (20.0, 20.0, 30.0)
    with pytest.raises(ValueError, match="every lower bound must be finite and below"):
        DPKMeans(3, bounds=(1.0, 0.0)).fit(x)
    with pytest.raises(ValueError, match="bounds must be \\(lower, upper\\), scalars or 3"):
        DPKMeans(3, bounds=([0.0, 1.0], 5.0)).fit(x)


def test_missing_values_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        DPKMeans(2).fit(np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]))


# k = 1 is no segmentation: fedseg refuses it, so checks that set n_clusters=1 do not apply.
NOT_APPLICABLE = {
    check: "n_clusters=1 is refused: one segment is no segmentation"
    for check in ("check_dont_overwrite_parameters", "check_methods_subset_invariance",
                  "check_fit2d_1sample", "check_fit2d_1feature", "check_fit2d_predict1d")
}  # fmt: skip


@pytest.mark.slow
@parametrize_with_checks(
    [DPKMeans(3, epsilon=math.inf, random_state=0)],
    expected_failed_checks=lambda estimator: NOT_APPLICABLE,
)
def test_scikit_learn_estimator_checks(estimator, check):
    # ε = ∞ runs the same federated code without noise: the checks' tiny data sets (50 rows)
    # are too small for a useful DP fit, and check_clustering asks for ARI > 0.4.
    check(estimator)
