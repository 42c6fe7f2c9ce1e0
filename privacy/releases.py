"""Every kind of noisy release fedseg makes: one definition, used by both sides.

A merchant builds a release's mechanism here from its noise multiplier and the public
parameters of the request (its own feature count, the public scaling it clips to, the
number of candidate scorers) to add noise and to charge its own ledger; the server builds
the same mechanism to plan the run, to know the noise each reply carries and to account.
Neither side re-derives a σ or a sensitivity by a formula of its own.

Neighbouring relation everywhere: add or remove one customer at one merchant, with all of
that customer's records (user-level privacy). Each sensitivity below is enforced by the
clipping the merchant applies before computing the statistic (privacy/scaling.py, the unit
normalization of item histories, opacus's per-sample clipping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from fedseg.privacy.accounting import Release
from fedseg.privacy.mechanisms import GaussianMechanism

RANGES = "feature_ranges"
MOMENTS = "feature_moments"
SQUARE_NORM = "square_norm"
INIT = "init_displacements"
LLOYD = "cluster_displacements"
PROFILES = "segment_profiles"
POPULARITY = "recommender_item_popularity"
GRAM = "recommender_gram"
CONTENT_CHECK = "recommender_content_check"
DPSGD = "recommender_dpsgd"
LIFETIME_HISTOGRAMS = "lifetime_histograms"
LIFETIME_SUMS = "lifetime_sums"

# The request that answers each kind of release.
TASK_OF = {
    RANGES: "feature_histograms",
    MOMENTS: "feature_moments",
    SQUARE_NORM: "square_norm",
    INIT: "cluster_displacements",
    LLOYD: "cluster_displacements",
    PROFILES: "segment_profiles",
    POPULARITY: "item_popularity",
    GRAM: "item_gram",
    CONTENT_CHECK: "content_check",
    DPSGD: "recommender_train",
    LIFETIME_HISTOGRAMS: "lifetime_histograms",
    LIFETIME_SUMS: "lifetime_sums",
}
KINDS = tuple(TASK_OF)
DPSGD_CLIP_NORM = 1.0  # opacus max_grad_norm: one customer's gradient is clipped to this


def histogram_mechanism(noise_multiplier: float, *, n_features: int) -> GaussianMechanism:
    """Feature histograms (d, bins), for range finding: one customer adds one count to one bin
    of each of the d histograms, so the release moves by √d in L2."""
    return GaussianMechanism(noise_multiplier, {"counts": math.sqrt(n_features)})


def moments_mechanism(noise_multiplier: float, *, dim: int, gram: bool) -> GaussianMechanism:
    """Moments of u = (clip(m, lower, upper) − c)/h ∈ [-1, 1]^d (the found bounds' centre and
    half-width): one customer adds 1 to ``count``, u (‖u‖ ≤ √d) to ``sum``, u² (‖u²‖ ≤ √d) to
    ``square`` and, for a DP projection, u uᵀ (‖u uᵀ‖_F = ‖u‖² ≤ d) to ``second``."""
    sensitivities = {"count": 1.0, "sum": math.sqrt(dim), "square": math.sqrt(dim)}
    if gram:
        sensitivities["second"] = float(dim)
        shares = {"count": 0.1, "sum": 0.25, "square": 0.25, "second": 0.4}
    else:
        shares = {"count": 0.1, "sum": 0.3, "square": 0.6}
    return GaussianMechanism(noise_multiplier, sensitivities, shares)


def square_norm_mechanism(noise_multiplier: float, *, radius: float) -> GaussianMechanism:
    """Σ‖z‖² over a merchant's customers, each z clipped to norm R: one customer adds ≤ R²."""
    return GaussianMechanism(noise_multiplier, {"square_norm": radius**2})


DISTANCE_SHARE = 0.05  # of a displacement release's budget, for the distance histogram


def displacement_mechanism(
    noise_multiplier: float, *, radius: float, dim: int
) -> GaussianMechanism:
    """Per-cluster sums of displacements clip(z − c, r) (k, d), counts (k,) and a histogram of
    distances to the own centre: one customer joins one cluster, adding a displacement of
    norm ≤ r, 1 to its count and 1 to one distance bin. Clipping around the customer's own
    centre makes the sensitivity the size of a cluster, not of the data set."""
    share = sums_share(dim) * (1 - DISTANCE_SHARE)
    return GaussianMechanism(
        noise_multiplier,
        {"sums": radius, "counts": 1.0, "distances": 1.0},
        shares={"sums": share, "counts": 1 - share - DISTANCE_SHARE, "distances": DISTANCE_SHARE},
    )


def profiles_mechanism(noise_multiplier: float, *, dim: int) -> GaussianMechanism:
    """Per-segment sums of v = (clip(x) − c)/h ∈ [-1, 1]^d in original units (the run's found
    bounds) and counts: one customer in one segment moves the sums by ≤ √d, the counts by 1."""
    share = sums_share(dim)
    return GaussianMechanism(
        noise_multiplier,
        {"sums": math.sqrt(dim), "counts": 1.0},
        shares={"sums": share, "counts": 1.0 - share},
    )


def sums_share(dim: int) -> float:
    """Budget share of the sums in a (sums, counts) release.

    Centre error ≈ √d·σ_sums/n + ‖c‖·σ_counts/n with σ ∝ 1/√share; minimizing over the
    share (taking ‖c‖ ≈ the clip radius) gives share_sums = 1 / (1 + d^(-1/3)).
    """
    return 1.0 / (1.0 + dim ** (-1.0 / 3.0))


def popularity_mechanism(noise_multiplier: float) -> GaussianMechanism:
    """Item popularity: the sum of every customer's unit-norm history row, so one customer
    moves it by 1."""
    return GaussianMechanism(noise_multiplier, {"overall": 1.0})


def gram_mechanism(noise_multiplier: float) -> GaussianMechanism:
    """Item co-occurrence Σ x xᵀ of unit-norm history rows: ‖x xᵀ‖_F = 1 per customer. The
    release is the upper triangle with off-diagonal entries scaled by √2 (gram_triangle), whose
    L2 norm is the Frobenius norm: sensitivity 1."""
    return GaussianMechanism(noise_multiplier, {"gram": 1.0})


def content_check_mechanism(noise_multiplier: float, *, candidates: int) -> GaussianMechanism:
    """Extra hits per candidate scorer: one customer moves each of the c entries by at most 1,
    so the vector moves by √c."""
    if candidates < 1:
        raise ValueError(f"the content check needs at least one candidate, got {candidates}")
    return GaussianMechanism(noise_multiplier, {"gain": math.sqrt(candidates)})


# Budget split inside the lifetime releases: the purchase pattern drives every published
# figure, the spend cells only the value (docs/lifetime_value.md).
LIFETIME_HISTOGRAM_SHARES = {"purchases": 0.6, "spend": 0.25, "activity": 0.15}
LIFETIME_SUM_SHARES = {
    "purchases": 0.3, "purchases_tail": 0.2, "alive": 0.1,
    "value": 0.15, "value_tail": 0.1, "counts": 0.15,
}  # fmt: skip


def lifetime_histogram_mechanism(noise_multiplier: float) -> GaussianMechanism:
    """Counts of customers per public cell: (T, x, t_x/T) cells for BG/NBD, (x, m) cells for
    Gamma-Gamma and (segment, activity rate) cells for the segments' bounds
    (privacy/published/lifetime.py). One customer (all its purchases collapse into one summary
    first, and it is in one segment of the published centres) is one count in one purchase
    cell, one in one activity cell, and one in one spend cell if it has a repeat purchase: each
    part moves by at most 1."""
    parts = dict.fromkeys(LIFETIME_HISTOGRAM_SHARES, 1.0)
    return GaussianMechanism(noise_multiplier, parts, shares=LIFETIME_HISTOGRAM_SHARES)


def lifetime_sums_mechanism(noise_multiplier: float) -> GaussianMechanism:
    """Per segment (k,): Σ min(g, B)/B and Σ clip((g − B)/(C − B), 0, 1) of each customer's
    expected purchases g (the body and the tail above the segment's public bound B, up to
    the cap C), the same two for the expected value, Σ P(alive) and the customer count. One
    customer is in one segment and adds at most 1 to each of that segment's six sums (every
    term lies in [0, 1]), so each part moves by at most 1."""
    parts = dict.fromkeys(LIFETIME_SUM_SHARES, 1.0)
    return GaussianMechanism(noise_multiplier, parts, shares=LIFETIME_SUM_SHARES)


def dpsgd_release(noise_multiplier: float, *, steps: int, sampling_rate: float) -> Release:
    """One merchant's local DP-SGD run: ``steps`` Poisson-subsampled Gaussian steps, each
    adding N(0, (z·C)²) to the sum of per-customer gradients clipped to C (one sample is one
    customer's whole history)."""
    return Release(
        DPSGD,
        noise_multiplier,
        count=steps,
        sampling_rate=sampling_rate,
        l2_sensitivity=DPSGD_CLIP_NORM,
        sigma=noise_multiplier * DPSGD_CLIP_NORM,
    )


def gram_triangle(gram: np.ndarray) -> np.ndarray:
    """Upper triangle (row-major, diagonal included), off-diagonal entries × √2, so the
    vector's L2 norm equals the matrix's Frobenius norm."""
    upper = np.triu_indices(len(gram))
    return gram[upper] * np.where(upper[0] == upper[1], 1.0, math.sqrt(2.0))


def gram_from_triangle(triangle: np.ndarray, size: int) -> np.ndarray:
    """The symmetric matrix whose ``gram_triangle`` is ``triangle``."""
    upper = np.triu_indices(size)
    matrix = np.zeros((size, size))
    matrix[upper] = triangle / np.where(upper[0] == upper[1], 1.0, math.sqrt(2.0))
    return matrix + np.triu(matrix, 1).T


@dataclass(frozen=True)
class NoisePlacement:
    """Where the noise of a release is drawn: each merchant adds ``share`` of its variance.

    Local noise: share 1, so a sum over m merchants holds m full draws. Distributed noise
    (secure aggregation): each merchant adds share = 1/(m_min − colluders) of the variance
    (privacy/secagg/params.py noise_share), the fewest honest contributors a released sum can
    have, so the sum holds at least one full draw.
    """

    share: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"a noise share must be in (0, 1], got {self.share}")

    def per_merchant(self, mechanism: GaussianMechanism) -> GaussianMechanism:
        """The mechanism one merchant applies."""
        if self.share == 1.0:
            return mechanism
        return GaussianMechanism(
            mechanism.noise_multiplier * math.sqrt(self.share),
            mechanism.sensitivities,
            mechanism.shares,
        )

    def draws_in_sum(self, contributors: int) -> float:
        """Full-variance noise draws in a sum over ``contributors`` merchants."""
        return max(contributors, 1) * self.share

    def sigma_of_sum(self, sigma: float, contributors: int) -> float:
        """Noise std of a sum over ``contributors`` merchants, each adding its share of σ²."""
        return sigma * math.sqrt(self.draws_in_sum(contributors))
