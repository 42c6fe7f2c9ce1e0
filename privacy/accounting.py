"""Privacy accounting for fedseg releases, delegated to dp-accounting.

Every release is a Gaussian mechanism (possibly Poisson-subsampled, for DP-SGD) described by its
noise multiplier z = sigma / L2 sensitivity. `epsilon_spent` composes a run's releases with the
PLD accountant (default) or RDP (cross-check); `calibrate` finds noise multipliers for a planned
run so that the composed epsilon never exceeds the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from scipy.special import log_ndtr, ndtr

if TYPE_CHECKING:
    import dp_accounting

# dp-accounting (and the scipy.stats it pulls in) takes seconds to import; merged plain
# Gaussian releases compose by the closed form below, so it is imported only where a
# subsampled or RDP composition needs it.

ACCOUNTANTS = ("pld", "rdp")
# Privacy-loss discretization of the PLD accountant. Pessimistic (an upper bound on epsilon);
# at 1e-3 the known values below agree with a 1e-5 grid to < 1e-4 and a 2,250-step DP-SGD run
# composes in ~40 ms (see docs/privacy.md).
PLD_VALUE_DISCRETIZATION = 1e-3


class AccountingError(ValueError):
    """A release, plan or accounting parameter is invalid."""


@dataclass(frozen=True)
class Release:
    """One kind of noisy release, composed `count` times."""

    name: str
    noise_multiplier: float
    count: int = 1
    sampling_rate: float | None = None
    l2_sensitivity: float | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise AccountingError("Release.name must be non-empty")
        _check_noise_multiplier(self.noise_multiplier, self.name)
        if not isinstance(self.count, int) or self.count < 1:
            raise AccountingError(f"Release {self.name!r}: count must be an int >= 1")
        _check_sampling_rate(self.sampling_rate, self.name)
        for field in ("l2_sensitivity", "sigma"):
            value = getattr(self, field)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise AccountingError(f"Release {self.name!r}: {field} must be finite and >= 0")

    @property
    def mechanism(self) -> str:
        """'gaussian' or 'subsampled_gaussian', as written in the privacy report."""
        return "gaussian" if self.sampling_rate is None else "subsampled_gaussian"

    def event(self) -> dp_accounting.DpEvent:
        """The dp-accounting event of this release, self-composed `count` times."""
        import dp_accounting

        event: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        if self.sampling_rate is not None:
            event = dp_accounting.PoissonSampledDpEvent(self.sampling_rate, event)
        if self.count > 1:
            event = dp_accounting.SelfComposedDpEvent(event, self.count)
        return event


@dataclass(frozen=True)
class PlannedRelease:
    """A release planned before a run: its share of the budget and how often it happens.

    Shares are zCDP-style: noise_multiplier = base / sqrt(share), so for plain Gaussian releases
    each planned release costs `share` of the total rho = count / (2 z^2) budget.
    """

    name: str
    share: float
    count: int = 1
    sampling_rate: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise AccountingError("PlannedRelease.name must be non-empty")
        if not (math.isfinite(self.share) and 0 < self.share <= 1):
            raise AccountingError(f"PlannedRelease {self.name!r}: share must be in (0, 1]")
        if not isinstance(self.count, int) or self.count < 1:
            raise AccountingError(f"PlannedRelease {self.name!r}: count must be an int >= 1")
        _check_sampling_rate(self.sampling_rate, self.name)


def epsilon_spent(releases: Sequence[Release], *, delta: float, accountant: str = "pld") -> float:
    """Epsilon at `delta` of all `releases` composed; 0.0 if none, inf if any is noiseless."""
    _check_delta(delta)
    _check_accountant(accountant)
    if not releases:
        return 0.0
    if any(r.noise_multiplier == 0 for r in releases):
        return math.inf
    return _composed_epsilon(_canonical(releases), delta, accountant)


def calibrate(
    plan: Sequence[PlannedRelease], *, epsilon: float, delta: float, accountant: str = "pld"
) -> dict[str, float]:
    """Noise multiplier per planned release so that the run spends at most `epsilon` (within 1%).

    Binary search on the base multiplier; the returned multipliers are always ones whose
    composed epsilon was computed (same accountant, same settings as `epsilon_spent`) and found
    <= epsilon, so a calibrated run never overshoots. epsilon=inf gives all 0.0 (no noise).
    """
    _check_plan(plan)
    _check_delta(delta)
    _check_accountant(accountant)
    if math.isinf(epsilon) and epsilon > 0:
        return {p.name: 0.0 for p in plan}
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise AccountingError(f"epsilon must be > 0 (or inf), got {epsilon}")

    def spent(base: float) -> float:
        return epsilon_spent(_releases_at(plan, base), delta=delta, accountant=accountant)

    lo, hi = _bracket(spent, epsilon)
    while hi / lo - 1 > 1e-9 and spent(hi) < epsilon * (1 - 2e-3):
        mid = math.sqrt(lo * hi)
        if spent(mid) <= epsilon:
            hi = mid
        else:
            lo = mid
    return {p.name: hi / math.sqrt(p.share) for p in plan}


def _bracket(spent, epsilon: float) -> tuple[float, float]:
    """(lo, hi) with spent(lo) > epsilon >= spent(hi)."""
    hi = 1.0
    while spent(hi) > epsilon:
        hi *= 2.0
        if hi > 1e9:
            raise AccountingError(f"cannot reach epsilon={epsilon}: even z=1e9 spends more")
    lo = hi / 2.0
    while spent(lo) <= epsilon:
        hi, lo = lo, lo / 2.0
        if lo < 1e-6:
            return lo, hi
    return lo, hi


def _releases_at(plan: Sequence[PlannedRelease], base: float) -> list[Release]:
    return [
        Release(p.name, base / math.sqrt(p.share), count=p.count, sampling_rate=p.sampling_rate)
        for p in plan
    ]


def _canonical(releases: Sequence[Release]) -> tuple[tuple[float, float, int], ...]:
    """A hashable, order-free description: plain Gaussians merged into one, subsampled ones
    merged per (noise_multiplier, sampling_rate) with their counts added.

    Composing Gaussian mechanisms with multipliers z_i is exactly one Gaussian mechanism with
    z = (sum count_i / z_i^2)^(-1/2) (the privacy-loss distributions are Gaussian, their means
    and variances add), so merging is exact for both accountants and makes PLD one event.
    Merging also makes a run charged one release at a time account exactly like its plan, so
    a calibrated run is never refused by a ledger whose cap is the calibration target.
    """
    precision = sum(r.count / r.noise_multiplier**2 for r in releases if r.sampling_rate is None)
    merged = [(1.0 / math.sqrt(_round_up(precision)), 1.0, 1)] if precision > 0 else []
    steps: dict[tuple[float, float], int] = {}
    for r in releases:
        if r.sampling_rate is not None:
            key = (r.noise_multiplier, r.sampling_rate)
            steps[key] = steps.get(key, 0) + r.count
    return tuple(merged + sorted((z, q, n) for (z, q), n in steps.items()))


def _round_up(value: float, digits: int = 12) -> float:
    """Round up to `digits` significant digits: summation-order noise (a few ulps) disappears,
    and rounding up only adds precision, i.e. never under-states epsilon."""
    quantum = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return math.ceil(value / quantum) * quantum


@lru_cache(maxsize=4096)
def _composed_epsilon(
    canonical: tuple[tuple[float, float, int], ...], delta: float, accountant: str
) -> float:
    events = [
        Release("x", z, count=n, sampling_rate=None if q == 1.0 else q).event()
        for z, q, n in canonical
    ]
    if accountant == "pld" and len(canonical) == 1 and canonical[0][1:] == (1.0, 1):
        return gaussian_epsilon(canonical[0][0], delta)
    import dp_accounting
    from dp_accounting import pld, rdp

    event = events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)
    if accountant == "pld":
        acc = pld.PLDAccountant(value_discretization_interval=PLD_VALUE_DISCRETIZATION)
    else:
        acc = rdp.RdpAccountant()
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """Exact ε of one Gaussian mechanism at ``delta`` (its privacy-loss distribution).

    Balle & Wang (2018), Thm. 8: δ(ε) = Φ(1/(2z) − εz) − e^ε Φ(−1/(2z) − εz) for noise
    multiplier z. This is the PLD of the Gaussian in closed form, so merged plain Gaussian
    releases need no discretized PLD (which is slower and rounds ε up by < 1e-3).
    """
    z = noise_multiplier

    def excess(eps: float) -> float:
        tail = math.exp(eps + log_ndtr(-1 / (2 * z) - eps * z))
        return ndtr(1 / (2 * z) - eps * z) - tail - delta

    if excess(0.0) <= 0:
        return 0.0
    hi = 1.0
    while excess(hi) > 0:
        hi *= 2
    lo = 0.0
    while hi - lo > 1e-12 * max(hi, 1.0):  # δ(ε) decreases in ε: bisect
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return hi


def _check_noise_multiplier(z: float, name: str) -> None:
    if not (math.isfinite(z) and z >= 0):
        raise AccountingError(f"Release {name!r}: noise_multiplier must be finite and >= 0")


def _check_sampling_rate(q: float | None, name: str) -> None:
    if q is not None and not (math.isfinite(q) and 0 < q <= 1):
        raise AccountingError(f"{name!r}: sampling_rate must be in (0, 1] or None")


def _check_delta(delta: float) -> None:
    if not (0 < delta < 1):
        raise AccountingError(f"delta must be in (0, 1), got {delta}")


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise AccountingError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def _check_plan(plan: Sequence[PlannedRelease]) -> None:
    if not plan:
        raise AccountingError("plan must list at least one release")
    names = [p.name for p in plan]
    if len(set(names)) != len(names):
        raise AccountingError(f"plan release names must be unique, got {names}")
    total = sum(p.share for p in plan)
    if abs(total - 1.0) > 1e-6:
        raise AccountingError(f"plan shares must sum to 1, got {total}")
