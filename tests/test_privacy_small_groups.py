"""Small groups: counts are always noisy; small noisy counts are suppressed."""

import numpy as np
import pytest
from fedseg.privacy.small_groups import (
    SmallGroupError,
    release_group_counts,
    suppress_small,
    suppression_threshold,
)
from scipy import stats


def test_suppress_small_hand_computed():
    mask = suppress_small(np.array([0.4, 5.0, 4.99, -2.0]), threshold=5.0)
    np.testing.assert_array_equal(mask, [False, True, False, False])
    with pytest.raises(SmallGroupError):
        suppress_small(np.array([np.nan]), threshold=1.0)


def test_released_counts_are_noisy_and_suppressed_groups_hidden():
    counts = np.array([0, 3, 500, 10_000])
    out = release_group_counts(
        counts, noise_multiplier=2.0, threshold=50.0, rng=np.random.default_rng(1)
    )
    assert not np.any(out.noisy == counts)
    np.testing.assert_array_equal(out.published, out.noisy >= 50.0)
    shown = out.published_counts()
    assert np.isnan(shown[0]) and np.isnan(shown[1]) and shown[3] == out.noisy[3]


def test_threshold_limits_how_often_a_small_group_is_published():
    sigma, min_size, rate = 4.0, 10, 0.01
    threshold = suppression_threshold(min_size=min_size, sigma=sigma, false_publish_rate=rate)
    trials = 200_000
    out = release_group_counts(
        np.full(trials, min_size),
        noise_multiplier=sigma,
        threshold=threshold,
        rng=np.random.default_rng(2),
    )
    published = int(out.published.sum())
    # one-sided binomial test at 1e-6: the observed rate is consistent with <= 1%
    assert stats.binomtest(published, trials, rate, alternative="greater").pvalue > 1e-6
    assert published > 0.5 * rate * trials  # and the threshold is not needlessly high
