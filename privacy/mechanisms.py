"""The Gaussian mechanism and the clipping that gives it its sensitivity.

Neighbouring relation (all of fedseg): two datasets are neighbours if one is the other plus or
minus one customer at one merchant, with all of that customer's records (user-level privacy).
Clipping lives here, beside the mechanism, so that a declared sensitivity is always the one the
clipping enforces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from fedseg.privacy.accounting import Release


class MechanismError(ValueError):
    """Bad mechanism parameters or values that do not match the declared parts."""


@dataclass(frozen=True)
class GaussianMechanism:
    """Gaussian mechanism over named parts.

    Neighbouring relation: add/remove one customer at one merchant; the customer changes part p
    by at most sensitivities[p] in L2 (all parts at once). Noise:
    sigma_p = noise_multiplier * sensitivities[p] / sqrt(shares[p]); shares sum to 1 (default
    equal), so sum_p (Delta_p / sigma_p)^2 = 1 / noise_multiplier^2 and the joint release is
    exactly a Gaussian mechanism with noise multiplier `noise_multiplier` w.r.t. the joint
    (normalized) sensitivity. noise_multiplier == 0 means no noise (epsilon = inf).
    """

    noise_multiplier: float
    sensitivities: Mapping[str, float]
    shares: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        z = self.noise_multiplier
        if not (isinstance(z, int | float) and math.isfinite(z) and z >= 0):
            raise MechanismError(f"noise_multiplier must be finite and >= 0, got {z!r}")
        if not self.sensitivities:
            raise MechanismError("sensitivities must name at least one part")
        for part, bound in self.sensitivities.items():
            if not (math.isfinite(bound) and bound > 0):
                raise MechanismError(f"sensitivity of part {part!r} must be finite and > 0")
        object.__setattr__(self, "sensitivities", MappingProxyType(dict(self.sensitivities)))
        object.__setattr__(self, "shares", MappingProxyType(self._checked_shares()))

    def _checked_shares(self) -> dict[str, float]:
        parts = list(self.sensitivities)
        if self.shares is None:
            return {p: 1.0 / len(parts) for p in parts}
        if set(self.shares) != set(parts):
            raise MechanismError(f"shares name parts {sorted(self.shares)}, expected {parts}")
        for part, share in self.shares.items():
            if not (math.isfinite(share) and share > 0):
                raise MechanismError(f"share of part {part!r} must be > 0")
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-9:
            raise MechanismError(f"shares must sum to 1, got {total}")
        return dict(self.shares)

    def sigmas(self) -> dict[str, float]:
        """Noise standard deviation of each part."""
        z = self.noise_multiplier
        return {p: z * d / math.sqrt(self.shares[p]) for p, d in self.sensitivities.items()}

    def release(
        self, values: Mapping[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Values plus Gaussian noise, one independent draw per element.

        values must have exactly the declared parts; float64 outputs (integer inputs are cast,
        never left noiseless). The caller must already have clipped to the sensitivities
        (see clip_rows_l2 / cap_contributions) and charged its ledger.
        """
        if set(values) != set(self.sensitivities):
            raise MechanismError(
                f"values have parts {sorted(values)}, "
                f"mechanism declares {sorted(self.sensitivities)}"
            )
        out = {}
        for part, sigma in self.sigmas().items():
            clean = _as_finite_float(values[part], part)
            out[part] = clean + rng.normal(0.0, sigma, size=clean.shape) if sigma > 0 else clean
        return out

    def as_release(self, name: str, *, count: int = 1) -> Release:
        """The ledger entry for `count` releases of this mechanism (sigma/sensitivity of the
        joint release, normalized: a single part reports its own sensitivity and sigma)."""
        if len(self.sensitivities) == 1:
            (bound,) = self.sensitivities.values()
            (sigma,) = self.sigmas().values()
        else:
            bound, sigma = 1.0, self.noise_multiplier
        return Release(name, self.noise_multiplier, count=count, l2_sensitivity=bound, sigma=sigma)


def _as_finite_float(value: np.ndarray, part: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MechanismError(f"part {part!r} is not numeric: {exc}") from exc
    if not np.all(np.isfinite(array)):
        raise MechanismError(f"part {part!r} contains NaN or inf")
    return array


def clip_rows_l2(x: np.ndarray, radius: float) -> np.ndarray:
    """Each row scaled down to L2 norm <= radius (rows already inside are unchanged).

    After clipping, adding or removing one row changes any sum of rows by at most `radius` in
    L2: that is the sensitivity to declare. radius=inf returns an unchanged float copy.
    """
    if not (radius > 0):
        raise MechanismError(f"clip radius must be > 0, got {radius}")
    rows = _as_finite_float(x, "x")
    if rows.ndim != 2:
        raise MechanismError(f"clip_rows_l2 expects a 2-D array (rows), got shape {rows.shape}")
    if math.isinf(radius):
        return rows
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    scale = np.minimum(1.0, radius / np.maximum(norms, np.finfo(np.float64).tiny))
    return rows * scale


def cap_contributions(
    user_ids: np.ndarray, bin_ids: np.ndarray, *, max_bins: int, rng: np.random.Generator
) -> np.ndarray:
    """Mask of records to keep so each user counts at most once in each of at most `max_bins` bins.

    Duplicate (user, bin) records collapse to one, and a user with more than `max_bins` distinct
    bins keeps a uniformly random `max_bins` of them (random, not first-seen, so the cap does
    not bias towards early records). A histogram of the kept records then changes by at most
    `histogram_sensitivity(max_bins)` = sqrt(max_bins) in L2 when one user is added/removed.
    """
    users, bins = np.asarray(user_ids), np.asarray(bin_ids)
    if users.shape != bins.shape or users.ndim != 1:
        raise MechanismError("user_ids and bin_ids must be 1-D arrays of the same length")
    if not (isinstance(max_bins, int | np.integer) and max_bins >= 1):
        raise MechanismError(f"max_bins must be an int >= 1, got {max_bins!r}")
    order = rng.permutation(users.size)
    _, user_code = np.unique(users[order], return_inverse=True)
    _, bin_code = np.unique(bins[order], return_inverse=True)
    pair = user_code.astype(np.int64) * (bin_code.max(initial=0) + 1) + bin_code
    _, first = np.unique(pair, return_index=True)  # one random record per (user, bin)
    first = np.sort(first)  # back to the random order, so each user's bins are shuffled
    by_user = first[np.argsort(user_code[first], kind="stable")]
    codes = user_code[by_user]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    rank = np.arange(codes.size) - np.repeat(starts, np.diff(np.r_[starts, codes.size]))
    keep = np.zeros(users.size, dtype=bool)
    keep[order[by_user[rank < max_bins]]] = True
    return keep


def histogram_sensitivity(max_bins: int) -> float:
    """L2 sensitivity of a 0/1-per-(user, bin) histogram capped by cap_contributions."""
    return math.sqrt(max_bins)


def capped_histogram(
    user_ids: np.ndarray,
    bin_ids: np.ndarray,
    *,
    n_bins: int,
    max_bins: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Counts per bin (bins 0..n_bins-1) after cap_contributions; float64, ready for noise."""
    bins = np.asarray(bin_ids)
    if bins.size and (bins.min() < 0 or bins.max() >= n_bins):
        raise MechanismError(f"bin_ids must lie in [0, {n_bins}), got {bins.min()}..{bins.max()}")
    keep = cap_contributions(user_ids, bins, max_bins=max_bins, rng=rng)
    return np.bincount(bins[keep].astype(np.int64), minlength=n_bins).astype(np.float64)
