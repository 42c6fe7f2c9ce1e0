"""Empirical privacy audit of a real release path on two neighbouring datasets.

Draw many releases on a dataset A and on its neighbour B (A plus one customer), score each
with a linear test statistic, and turn the observed error rates of the best threshold into a
lower bound on epsilon: an (ε, δ)-DP release satisfies P_B[S] ≤ e^ε P_A[S] + δ for every
set S, so ε ≥ log((P_B[S] − δ) / P_A[S]). Rates are bounded with Clopper–Pearson intervals;
the statistic's direction and the threshold are chosen on one half of the trials and
evaluated on the other, so the bound holds with probability ≥ ``confidence`` (Jagielski et
al. 2020). A correct release's bound stays below its accounted ε; a sensitivity error (a
statistic that depends on other customers) or too little noise pushes it above.

The samplers are black boxes (e.g. a merchant node answering a request): the audit knows
neither the mechanism nor the noise. The statistic's direction is estimated from the
selection half, or given (``direction``, e.g. the difference of the two noise-free releases
the same release path makes at noise multiplier 0), which keeps high-dimensional releases
auditable with few trials. Beside the assumption-free bound above, the audit
estimates the Gaussian trade-off μ of its statistic (the standardized distance between the
two score distributions, which are exactly Gaussian when Gaussian noise is added to a
fixed statistic; Nasr et al. 2023) and the ε that a lower confidence bound on μ implies:
far tighter for the same trials, so a σ/2 bug shows at a few thousand trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from fedseg.privacy.accounting import gaussian_epsilon
from scipy.stats import beta, norm

Sampler = Callable[[int], np.ndarray]  # n → an (n, m) array of n fresh releases


class AuditError(ValueError):
    """Bad audit parameters."""


@dataclass(frozen=True)
class AuditResult:
    """Audited lower bound on epsilon and the test that achieved it."""

    epsilon_lower_bound: float
    hit_rate_lower: float  # Clopper-Pearson lower bound of P[S] on the favoured dataset
    false_rate_upper: float  # Clopper-Pearson upper bound of P[S] on the other one
    trials: int
    delta: float
    confidence: float
    mu: float = 0.0  # estimated Gaussian trade-off of the statistic (1 / noise multiplier)
    mu_lower: float = 0.0  # its lower confidence bound
    epsilon_gaussian_lower_bound: float = 0.0  # ε of a Gaussian mechanism with μ_lower


def audit(
    sample_a: Sampler,
    sample_b: Sampler,
    *,
    trials: int,
    delta: float,
    confidence: float = 1 - 1e-6,
    direction: np.ndarray | None = None,
) -> AuditResult:
    """Audit ``trials`` releases from each sampler (half to choose the test, half to
    measure it)."""
    if trials < 200 or not (0 < delta < 1) or not (0 < confidence < 1):
        raise AuditError("need trials >= 200, delta in (0, 1), confidence in (0, 1)")
    half = trials // 2
    a, b = _matrix(sample_a, trials), _matrix(sample_b, trials)
    # Likelihood-ratio direction of Gaussian noise, estimated on the selection half only.
    variance = np.maximum(a[:half].var(axis=0), 1e-12)
    shift = b[:half].mean(axis=0) - a[:half].mean(axis=0) if direction is None else direction
    weights = np.asarray(shift, dtype=np.float64).ravel() / variance
    scores_a, scores_b = a @ weights, b @ weights
    alpha = 1 - confidence
    threshold, side = _select(scores_a[:half], scores_b[:half], delta, alpha)
    hits, falses = _rates(scores_a[half:], scores_b[half:], threshold, side)
    n = trials - half
    hit_lo = float(_cp_lower(hits, n, alpha / 2))
    false_hi = float(_cp_upper(falses, n, alpha / 2))
    bound = math.log((hit_lo - delta) / false_hi) if hit_lo > delta else 0.0
    mu, mu_lower = _gaussian_tradeoff(scores_a[half:], scores_b[half:], alpha)
    gaussian = gaussian_epsilon(1.0 / mu_lower, delta) if mu_lower > 0 else 0.0
    return AuditResult(
        max(bound, 0.0), hit_lo, false_hi, trials, delta, confidence, mu, mu_lower, gaussian
    )


def _gaussian_tradeoff(scores_a, scores_b, alpha) -> tuple[float, float]:
    """Standardized mean difference of the scores and its lower (1 − α/2) confidence bound
    (normal approximation of its sampling distribution, Hedges & Olkin 1985)."""
    n_a, n_b = scores_a.size, scores_b.size
    pooled = math.sqrt((scores_a.var(ddof=1) + scores_b.var(ddof=1)) / 2)
    mu = abs(float(scores_b.mean() - scores_a.mean())) / max(pooled, 1e-300)
    error = math.sqrt((n_a + n_b) / (n_a * n_b) + mu**2 / (2 * (n_a + n_b)))
    return mu, max(mu - float(norm.isf(alpha / 2)) * error, 0.0)


def _matrix(sample: Sampler, trials: int) -> np.ndarray:
    drawn = np.asarray(sample(trials), dtype=np.float64)
    if drawn.ndim != 2 or drawn.shape[0] != trials:
        raise AuditError(f"a sampler must return ({trials}, m) releases, got {drawn.shape}")
    return drawn


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
    """Counts of S on the favoured dataset (hits) and on the other (false)."""
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
