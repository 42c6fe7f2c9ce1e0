"""Small groups: every released group count is noisy, and small noisy counts are suppressed.

A count of customers per group (segment, category, ...) changes by 1 in one group when one
customer is added or removed, so its L2 sensitivity is 1. Publishing only groups whose *noisy*
count clears a threshold keeps the suppression decision itself differentially private
(post-processing); thresholding the true count would not be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from fedseg.privacy.mechanisms import GaussianMechanism
from scipy.stats import norm


class SmallGroupError(ValueError):
    """Bad threshold, counts or noise parameters."""


@dataclass(frozen=True)
class GroupCounts:
    """Noisy counts of every group and which of them may be published."""

    noisy: np.ndarray
    published: np.ndarray

    def published_counts(self) -> np.ndarray:
        """Noisy counts with suppressed groups set to NaN (for reports)."""
        return np.where(self.published, self.noisy, np.nan)


def suppress_small(noisy_counts: np.ndarray, *, threshold: float) -> np.ndarray:
    """Boolean mask of groups to publish: noisy count >= threshold."""
    counts = np.asarray(noisy_counts, dtype=np.float64)
    if not math.isfinite(threshold):
        raise SmallGroupError(f"threshold must be finite, got {threshold}")
    if not np.all(np.isfinite(counts)):
        raise SmallGroupError("noisy_counts contain NaN or inf")
    return counts >= threshold


def suppression_threshold(*, min_size: float, sigma: float, false_publish_rate: float) -> float:
    """Threshold such that a group of true size <= min_size is published with probability at
    most `false_publish_rate` under Gaussian noise of std `sigma`."""
    if not (0 < false_publish_rate < 1):
        raise SmallGroupError("false_publish_rate must be in (0, 1)")
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise SmallGroupError("sigma must be finite and >= 0")
    return float(min_size + sigma * norm.isf(false_publish_rate))


def count_mechanism(*, noise_multiplier: float) -> GaussianMechanism:
    """Gaussian mechanism for a vector of per-group customer counts (L2 sensitivity 1)."""
    return GaussianMechanism(noise_multiplier, {"counts": 1.0})


def release_group_counts(
    counts: np.ndarray, *, noise_multiplier: float, threshold: float, rng: np.random.Generator
) -> GroupCounts:
    """Noisy group counts plus the publish mask; the caller charges its ledger first
    (count_mechanism(...).as_release(name))."""
    noisy = count_mechanism(noise_multiplier=noise_multiplier).release({"counts": counts}, rng)
    return GroupCounts(noisy["counts"], suppress_small(noisy["counts"], threshold=threshold))
