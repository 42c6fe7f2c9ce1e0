"""Merchants as numpy arrays, releasing exactly what a merchant node would release.

Each release is a ``GaussianMechanism`` built from the plan's noise multiplier and the
release's sensitivities; every merchant computes the raw statistic on its own customers
(the same functions ``client/statistics.py`` gives the node), adds its noise and the server
sees only the sum. Noise placement as in the apps:

- ``local``: every merchant adds the full σ (the sum carries √m·σ);
- ``distributed``: every merchant adds a 1/m' share of the variance, m' = the merchants
  planned to survive (dropout tolerance 10 %, ``server/secure.py:noise_clients``); with
  every merchant answering, the sum carries σ·√(m/m').

Every release is also recorded as the ``Release`` a merchant's ledger would charge, so a
harness run's ε can be composed exactly like a model's privacy report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from fedseg.privacy.accounting import Release, epsilon_spent
from fedseg.privacy.mechanisms import GaussianMechanism

NOISE_PLACEMENTS = ("local", "distributed")
Statistic = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass
class Channel:
    """The federation seen through DP releases: ``release`` returns the noisy sum."""

    parts: Sequence[np.ndarray]  # one (n_m, d) array per merchant, in original units
    noise: str
    rng: np.random.Generator
    dropout_tolerance: float = 0.1
    releases: list[Release] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.noise not in NOISE_PLACEMENTS:
            raise ValueError(f"noise must be one of {NOISE_PLACEMENTS}, got {self.noise!r}")

    @property
    def merchants(self) -> int:
        return len(self.parts)

    @property
    def planned_survivors(self) -> int:
        return max(1, math.floor(self.merchants * (1.0 - self.dropout_tolerance)))

    def noise_share(self) -> float:
        """Fraction of the noise variance each merchant adds."""
        return 1.0 if self.noise == "local" else 1.0 / self.planned_survivors

    def copies(self) -> float:
        """Variance of the summed noise in units of one full-σ draw."""
        return self.merchants * self.noise_share()

    def aggregate_sigmas(self, mechanism: GaussianMechanism) -> dict[str, float]:
        """Noise std of each part of the summed release."""
        root = math.sqrt(self.copies())
        return {part: sigma * root for part, sigma in mechanism.sigmas().items()}

    def release(
        self,
        name: str,
        mechanism: GaussianMechanism,
        statistic: Statistic,
    ) -> dict[str, np.ndarray]:
        """Every merchant's ``statistic`` plus its own noise, summed (what the server gets)."""
        self.releases.append(mechanism.as_release(name))
        scaled = GaussianMechanism(
            mechanism.noise_multiplier * math.sqrt(self.noise_share()),
            mechanism.sensitivities,
            mechanism.shares,
        )
        total: dict[str, np.ndarray] | None = None
        for part in self.parts:
            noisy = scaled.release(dict(statistic(part)), self.rng)
            total = noisy if total is None else {p: total[p] + noisy[p] for p in total}
        assert total is not None
        self.log.append({"release": name, "z": mechanism.noise_multiplier})
        return total

    def exact(self, statistic: Statistic) -> dict[str, np.ndarray]:
        """The noiseless sum (evaluation only; never used by a fit)."""
        total: dict[str, np.ndarray] | None = None
        for part in self.parts:
            values = {p: np.asarray(v, dtype=np.float64) for p, v in statistic(part).items()}
            total = values if total is None else {p: total[p] + values[p] for p in total}
        assert total is not None
        return total

    def epsilon(self, delta: float) -> float:
        return epsilon_spent(self.releases, delta=delta) if self.releases else 0.0
