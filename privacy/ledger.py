"""A persistent privacy ledger with a hard epsilon cap.

Each client keeps one in its state directory, with a cap it chooses itself, and charges every
request to it *before* drawing any noise: the client does not trust the server's arithmetic.
The server's ledger is the same class and produces the privacy report of model.json.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from fedseg.privacy.accounting import (
    AccountingError,
    Release,
    _check_accountant,
    _check_delta,
    epsilon_spent,
)
from fedseg.privacy.mechanisms import GaussianMechanism

LEDGER_VERSION = 1
_RELEASE_FIELDS = ("name", "noise_multiplier", "count", "sampling_rate", "l2_sensitivity", "sigma")


class BudgetExceeded(RuntimeError):
    """A request would take the ledger past its epsilon cap; nothing was recorded or released."""


class LedgerFileError(ValueError):
    """The ledger file exists but cannot be read as a fedseg ledger."""


class PrivacyLedger:
    """Every release of one party, in order, with the epsilon they spend at `delta`.

    path None keeps the ledger in memory; otherwise an existing file is loaded (history survives
    a restart) and every charge rewrites it atomically (temporary file + os.replace).
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        epsilon_cap: float,
        delta: float,
        accountant: str = "pld",
        durable: bool = True,
    ) -> None:
        if not (epsilon_cap >= 0):
            raise AccountingError(f"epsilon_cap must be >= 0 (or inf), got {epsilon_cap}")
        _check_delta(delta)
        _check_accountant(accountant)
        self.path = None if path is None else Path(path)
        self.epsilon_cap = float(epsilon_cap)
        self.delta = float(delta)
        self.accountant = accountant
        self.durable = durable  # fsync every write; simulations with throw-away state skip it
        self._releases: list[Release] = self._load() if self.path else []
        self._lock = threading.Lock()

    @property
    def releases(self) -> list[Release]:
        """All recorded releases, oldest first (a copy)."""
        return list(self._releases)

    def spent(self) -> float:
        """Epsilon spent so far at self.delta."""
        return self._epsilon(self._releases)

    def cost_if(self, release: Release) -> float:
        """Total epsilon if `release` were added."""
        return self._epsilon([*self._releases, release])

    def would_exceed(self, release: Release) -> bool:
        """True if charging `release` would take the total past the cap."""
        return self.cost_if(release) > self.epsilon_cap

    def charge(self, release: Release) -> None:
        """Record `release` (and persist) or raise BudgetExceeded, recording nothing.

        Call this BEFORE drawing noise for the release.
        """
        with self._lock:
            spent, total = self.spent(), self.cost_if(release)
            if total > self.epsilon_cap:
                raise BudgetExceeded(
                    f"privacy budget exceeded: cap epsilon={self.epsilon_cap:g} at "
                    f"delta={self.delta:g}, spent {spent:.4f}, request {release.name!r} "
                    f"(noise_multiplier={release.noise_multiplier:g}, count={release.count}) "
                    f"would bring the total to {total:.4f}; refused, nothing released"
                )
            self._releases.append(release)
            if self.path is not None:
                self._save()

    def release(
        self,
        mechanism: GaussianMechanism,
        values: Mapping[str, np.ndarray],
        *,
        name: str,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Charge one release of `mechanism`, then (only if allowed) draw its noise."""
        self.charge(mechanism.as_release(name))
        return mechanism.release(values, rng)

    def report(self) -> dict:
        """The privacy report: total epsilon and one entry per kind of release."""
        return {
            "epsilon": self.spent(),
            "delta": self.delta,
            "accountant": self.accountant,
            "epsilon_cap": self.epsilon_cap,
            "releases": [self._entry(r) for r in _merged(self._releases)],
        }

    def _entry(self, release: Release) -> dict:
        entry = {
            "name": release.name,
            "mechanism": release.mechanism,
            "noise_multiplier": release.noise_multiplier,
            "count": release.count,
        }
        if release.sampling_rate is not None:
            entry["sampling_rate"] = release.sampling_rate
        entry["l2_sensitivity"] = release.l2_sensitivity
        entry["sigma"] = release.sigma
        entry["epsilon_alone"] = self._epsilon([release])
        return entry

    def _epsilon(self, releases: list[Release]) -> float:
        return epsilon_spent(releases, delta=self.delta, accountant=self.accountant)

    def _load(self) -> list[Release]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != LEDGER_VERSION:
                raise LedgerFileError(f"{self.path}: unknown ledger version {data.get('version')}")
            return [Release(**{k: r.get(k) for k in _RELEASE_FIELDS}) for r in data["releases"]]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerFileError(f"{self.path}: not a readable privacy ledger ({exc})") from exc
        except AccountingError as exc:
            raise LedgerFileError(f"{self.path}: invalid release entry ({exc})") from exc

    def _save(self) -> None:
        data = {
            "version": LEDGER_VERSION,
            "epsilon_cap": self.epsilon_cap if math.isfinite(self.epsilon_cap) else "inf",
            "delta": self.delta,
            "accountant": self.accountant,
            "releases": [{k: getattr(r, k) for k in _RELEASE_FIELDS} for r in self._releases],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
                handle.flush()
                if self.durable:
                    os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _merged(releases: list[Release]) -> list[Release]:
    """One release per (name, noise_multiplier, sampling_rate), counts added, first-seen order."""
    merged: dict[tuple, Release] = {}
    for r in releases:
        key = (r.name, r.noise_multiplier, r.sampling_rate)
        if key in merged:
            old = merged[key]
            merged[key] = Release(
                r.name,
                r.noise_multiplier,
                count=old.count + r.count,
                sampling_rate=r.sampling_rate,
                l2_sensitivity=old.l2_sensitivity,
                sigma=old.sigma,
            )
        else:
            merged[key] = r
    return list(merged.values())
