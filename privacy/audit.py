"""Empirical privacy audit of the Gaussian mechanism as fedseg uses it.

Release many times on two neighbouring inputs (with and without one customer), distinguish them
with the optimal (likelihood-ratio) test statistic, and turn the observed error rates into a
lower bound on epsilon: an (eps, delta)-DP mechanism satisfies P_B[S] <= e^eps P_A[S] + delta
for every set S, so eps >= log((P_B[S] - delta) / P_A[S]). Rates are bounded with
Clopper-Pearson intervals. The threshold is chosen on one half of the trials and evaluated on
the other half, so the bound holds with probability >= `confidence` (Jagielski et al. 2020).
A correct mechanism's bound stays below its accounted epsilon; a bug that adds too little
noise pushes it above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from fedseg.privacy.mechanisms import GaussianMechanism
from scipy.stats import beta


class AuditError(ValueError):
    """Bad audit parameters."""


@dataclass(frozen=True)
class AuditResult:
    """Audited lower bound on epsilon and the test that achieved it."""

    epsilon_lower_bound: float
    threshold: float
    side: str  # "above": the set S is {score > threshold}; "below": {score <= threshold}
    hit_rate_lower: float  # Clopper-Pearson lower bound of P[S] on the favoured input
    false_rate_upper: float  # Clopper-Pearson upper bound of P[S] on the other input
    trials: int
    delta: float
    confidence: float


def audit_gaussian(
    mechanism: GaussianMechanism,
    values_a: Mapping[str, np.ndarray],
    values_b: Mapping[str, np.ndarray],
    *,
    trials: int,
    delta: float,
    rng: np.random.Generator,
    confidence: float = 1 - 1e-6,
    batch: int = 50_000,
) -> AuditResult:
    """Audit `mechanism` on neighbouring noiseless outputs a and b (`trials` releases of each).

    Deterministic given `rng`. Releases go through mechanism.release itself, batched by
    stacking copies of the input (its noise is independent per element).
    """
    if trials < 100 or not (0 < delta < 1) or not (0 < confidence < 1):
        raise AuditError("need trials >= 100, delta in (0, 1), confidence in (0, 1)")
    weights = _score_weights(mechanism, values_a, values_b)
    scores_a = _scores(mechanism, values_a, values_a, weights, trials, rng, batch)
    scores_b = _scores(mechanism, values_b, values_a, weights, trials, rng, batch)
    half = trials // 2
    alpha = 1 - confidence
    threshold, side = _select(scores_a[:half], scores_b[:half], delta, alpha)
    hit, false = _rates(scores_a[half:], scores_b[half:], threshold, side)
    n = trials - half
    hit_lo = float(_cp_lower(hit, n, alpha / 2))
    false_hi = float(_cp_upper(false, n, alpha / 2))
    bound = math.log((hit_lo - delta) / false_hi) if hit_lo > delta else 0.0
    return AuditResult(
        max(bound, 0.0), threshold, side, hit_lo, false_hi, trials, delta, confidence
    )


def _score_weights(mechanism, values_a, values_b) -> dict[str, np.ndarray]:
    """Likelihood-ratio direction: (b - a) / sigma^2 per part (b - a if noiseless)."""
    sigmas = mechanism.sigmas()
    return {
        p: (np.asarray(values_b[p], float) - np.asarray(values_a[p], float))
        / (sigmas[p] ** 2 if sigmas[p] > 0 else 1.0)
        for p in sigmas
    }


def _scores(mechanism, values, origin, weights, trials, rng, batch) -> np.ndarray:
    """Log-likelihood-ratio statistic of `trials` releases of `values` (up to a constant)."""
    out = []
    for start in range(0, trials, batch):
        size = min(batch, trials - start)
        stacked = {
            p: np.broadcast_to(np.asarray(v, float), (size, *np.shape(v)))
            for p, v in values.items()
        }
        noisy = mechanism.release(stacked, rng)
        score = np.zeros(size)
        for p, w in weights.items():
            centred = (noisy[p] - np.asarray(origin[p], float)).reshape(size, -1)
            score += centred @ w.ravel()
        out.append(score)
    return np.concatenate(out)


def _select(scores_a, scores_b, delta, alpha) -> tuple[float, str]:
    """Threshold and side with the best Clopper-Pearson epsilon bound on the selection half."""
    n = scores_a.size
    candidates = np.quantile(np.concatenate([scores_a, scores_b]), np.linspace(0.001, 0.999, 400))
    best = (-math.inf, float(candidates[0]), "above")
    for side in ("above", "below"):
        hits, falses = _rates(scores_a, scores_b, candidates, side)
        lo = _cp_lower(hits, n, alpha / 2)
        hi = _cp_upper(falses, n, alpha / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            eps = np.where(lo > delta, np.log((lo - delta) / hi), -math.inf)
        i = int(np.argmax(eps))
        if eps[i] > best[0]:
            best = (float(eps[i]), float(candidates[i]), side)
    return best[1], best[2]


def _rates(scores_a, scores_b, threshold, side):
    """Counts of S on the favoured input (hits) and on the other (false)."""
    sorted_a, sorted_b = np.sort(scores_a), np.sort(scores_b)
    below_a = np.searchsorted(sorted_a, threshold, side="right")
    below_b = np.searchsorted(sorted_b, threshold, side="right")
    if side == "above":  # S = {score > t} favours b
        return sorted_b.size - below_b, sorted_a.size - below_a
    return below_a, below_b  # S = {score <= t} favours a


def _cp_lower(k, n, alpha):
    k = np.asarray(k)
    return np.where(k > 0, beta.ppf(alpha, np.maximum(k, 1), n - k + 1), 0.0)


def _cp_upper(k, n, alpha):
    k = np.asarray(k)
    return np.where(k < n, beta.ppf(1 - alpha, k + 1, np.maximum(n - k, 1)), 1.0)
