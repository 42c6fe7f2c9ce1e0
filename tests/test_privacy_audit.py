"""Empirical audit of fedseg's Gaussian mechanism (cluster sums and counts) at epsilon = 1."""

import numpy as np
import pytest
from fedseg.privacy.accounting import PlannedRelease, calibrate
from fedseg.privacy.audit import audit_gaussian
from fedseg.privacy.cluster_release import cluster_mechanism, cluster_sums_and_counts

DELTA = 1e-5
TRIALS = 1_000_000


@pytest.fixture(scope="module")
def neighbours():
    """Customer data with and without one outlier customer (x1000), as released by a client."""
    rng = np.random.default_rng(77)
    x = rng.normal(size=(300, 3))
    labels = rng.integers(0, 4, size=300)
    x[0] *= 1000.0
    with_outlier = cluster_sums_and_counts(x, labels, k=4, radius=1.5)
    without = cluster_sums_and_counts(x[1:], labels[1:], k=4, radius=1.5)
    return with_outlier, without


@pytest.fixture(scope="module")
def calibrated_multiplier():
    return calibrate([PlannedRelease("round", 1.0)], epsilon=1.0, delta=DELTA)["round"]


def test_correct_mechanism_audits_below_its_epsilon(neighbours, calibrated_multiplier):
    mech = cluster_mechanism(noise_multiplier=calibrated_multiplier, radius=1.5)
    result = audit_gaussian(
        mech, *neighbours, trials=TRIALS, delta=DELTA, rng=np.random.default_rng(1)
    )
    assert result.epsilon_lower_bound < 1.0


def test_planted_bug_halved_sigma_is_caught(neighbours, calibrated_multiplier):
    buggy = cluster_mechanism(noise_multiplier=calibrated_multiplier / 2, radius=1.5)
    result = audit_gaussian(
        buggy, *neighbours, trials=TRIALS, delta=DELTA, rng=np.random.default_rng(2)
    )
    assert result.epsilon_lower_bound > 1.0


def test_audit_is_deterministic_given_rng(neighbours):
    mech = cluster_mechanism(noise_multiplier=2.0, radius=1.5)
    a = audit_gaussian(mech, *neighbours, trials=20_000, delta=DELTA, rng=np.random.default_rng(3))
    b = audit_gaussian(mech, *neighbours, trials=20_000, delta=DELTA, rng=np.random.default_rng(3))
    assert a == b
