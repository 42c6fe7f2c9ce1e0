"""A persistent privacy ledger with a hard epsilon cap.

Each merchant keeps one in its state directory, with a cap it chooses itself, and charges
every release to it *before* any noisy value leaves: the merchant does not trust the
server's arithmetic. The server's ledger is the same class and gives model.json its
privacy report.

On disk the ledger is safe across processes and crashes: every operation takes an
exclusive lock, re-reads the file under it, and writes a new version atomically (temporary
file, fsync, rename, fsync of the directory). Two processes sharing one state directory
therefore never lose each other's charges, and a charge is on disk before the caller can
release anything. The ledger also hands out noise-stream numbers, so a seeded merchant
never draws the same noise twice, whatever the server asks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from fedseg.privacy.accounting import (
    AccountingError,
    Release,
    _check_accountant,
    _check_delta,
    epsilon_spent,
)

LEDGER_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_RELEASE_FIELDS = ("name", "noise_multiplier", "count", "sampling_rate", "l2_sensitivity", "sigma")
SERVED_MARK = ".served"  # beside the ledger file once it has recorded a charge


class BudgetExceeded(RuntimeError):
    """A request would take the ledger past its epsilon cap; nothing was recorded or released."""


class LedgerFileError(ValueError):
    """The ledger file cannot be read as a fedseg ledger, or has gone missing."""


class PrivacyLedger:
    """Every release of one party, in order, with the epsilon they spend at ``delta``.

    ``path`` None keeps the ledger in memory; otherwise the file holds the history (it
    survives restarts and is shared by every process using the same path).
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
        self._releases: list[Release] = []
        self._streams = 0
        self._thread_lock = threading.Lock()
        with self._locked():  # a missing or damaged file fails here, at start
            pass

    @property
    def releases(self) -> list[Release]:
        """All recorded releases, oldest first (a copy)."""
        with self._locked():
            return list(self._releases)

    def spent(self) -> float:
        """Epsilon spent so far at self.delta."""
        return self._epsilon(self.releases)

    def cost_if(self, *releases: Release) -> float:
        """Total epsilon if ``releases`` were added."""
        return self._epsilon([*self.releases, *releases])

    def would_exceed(self, *releases: Release) -> bool:
        """True if charging ``releases`` would take the total past the cap."""
        return self.cost_if(*releases) > self.epsilon_cap

    def charge(self, release: Release) -> None:
        """Record ``release`` (on disk before returning) or raise BudgetExceeded, recording
        nothing. Call this before any noisy value of the release can leave."""
        with self._locked(write=True):
            total = self._epsilon([*self._releases, release])
            if total > self.epsilon_cap:
                spent = self._epsilon(self._releases)
                raise BudgetExceeded(
                    f"privacy budget exceeded: cap epsilon={self.epsilon_cap:g} at "
                    f"delta={self.delta:g}, spent {spent:.4f}, request {release.name!r} "
                    f"(noise_multiplier={release.noise_multiplier:g}, count={release.count}) "
                    f"would bring the total to {total:.4f}; refused, nothing released"
                )
            self._releases.append(release)

    def next_stream(self) -> int:
        """A number never handed out before by this ledger (persisted): the index of a fresh
        noise stream for a seeded merchant."""
        with self._locked(write=True):
            self._streams += 1
            return self._streams

    def report(self) -> dict:
        """The privacy report: total epsilon and one entry per kind of release."""
        releases = self.releases
        return {
            "epsilon": self._epsilon(releases),
            "delta": self.delta,
            "accountant": self.accountant,
            "epsilon_cap": self.epsilon_cap,
            "releases": [self._entry(r) for r in merged(releases)],
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

    def _epsilon(self, releases: Sequence[Release]) -> float:
        return epsilon_spent(releases, delta=self.delta, accountant=self.accountant)

    # -- the file ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, write: bool = False) -> Iterator[None]:
        """Hold the lock with the history freshly read; on ``write``, persist it on exit (only
        if the body did not raise)."""
        with self._thread_lock:
            if self.path is None:
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._releases, self._streams = self._load()
                yield
                if write:
                    self._save()

    def _load(self) -> tuple[list[Release], int]:
        if not self.path.exists():
            if self._served_mark().exists():
                raise LedgerFileError(
                    f"{self.path}: the privacy ledger of a state directory that has served runs "
                    "is missing; restore it, or reset it on purpose with "
                    "`fedseg ledger reset --state-dir DIR` (forgets everything spent)"
                )
            return [], 0
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") not in _READABLE_VERSIONS:
                raise LedgerFileError(f"{self.path}: unknown ledger version {data.get('version')}")
            releases = [Release(**{k: r.get(k) for k in _RELEASE_FIELDS}) for r in data["releases"]]
            return releases, int(data.get("streams", 0))
        except LedgerFileError:
            raise
        except AccountingError as exc:
            raise LedgerFileError(f"{self.path}: invalid release entry ({exc})") from exc
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON too
            raise LedgerFileError(f"{self.path}: not a readable privacy ledger ({exc})") from exc

    def _save(self) -> None:
        data = {
            "version": LEDGER_VERSION,
            "epsilon_cap": self.epsilon_cap if math.isfinite(self.epsilon_cap) else "inf",
            "delta": self.delta,
            "accountant": self.accountant,
            "streams": self._streams,
            "releases": [{k: getattr(r, k) for k in _RELEASE_FIELDS} for r in self._releases],
        }
        _atomic_write(self.path, json.dumps(data, indent=1), durable=self.durable)
        if self._releases and not self._served_mark().exists():
            _atomic_write(self._served_mark(), "", durable=self.durable)

    def _served_mark(self) -> Path:
        return self.path.with_name(self.path.name + SERVED_MARK)


def reset_ledger(path: str | Path) -> bool:
    """Forget everything a ledger file recorded (its served mark too); True if there was one."""
    path = Path(path)
    existed = path.exists()
    for stale in (path, path.with_name(path.name + SERVED_MARK)):
        stale.unlink(missing_ok=True)
    return existed


def _atomic_write(path: Path, text: str, *, durable: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:  # the rename itself survives a crash only once the directory is synced
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def merged(releases: Sequence[Release]) -> list[Release]:
    """One release per (name, noise_multiplier, sampling_rate), counts added, first-seen order."""
    out: dict[tuple, Release] = {}
    for r in releases:
        key = (r.name, r.noise_multiplier, r.sampling_rate)
        if key in out:
            old = out[key]
            out[key] = Release(
                r.name,
                r.noise_multiplier,
                count=old.count + r.count,
                sampling_rate=r.sampling_rate,
                l2_sensitivity=old.l2_sensitivity,
                sigma=old.sigma,
            )
        else:
            out[key] = r
    return list(out.values())
