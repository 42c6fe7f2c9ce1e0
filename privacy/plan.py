"""A run's whole privacy plan, sent to every merchant before anything is released.

The server lists every kind of release it will ask for (noise multiplier, how many times,
sampling rate) and how noise is placed. Each merchant accepts or refuses the plan as a whole
against its own ledger and policy (client/plan.py), then answers only requests inside it: a
run that cannot fit a merchant's remaining cap is refused before its first release.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from fedseg.privacy.accounting import Release
from fedseg.privacy.releases import KINDS

NOISE_PLACEMENTS = ("local", "distributed")
PLAN_VERSION = 1


class PlanError(ValueError):
    """A plan that cannot be read or is not a valid plan."""


@dataclass(frozen=True)
class RunPlan:
    """Every release of one run, and where its noise is drawn.

    ``dropout_tolerance`` and ``collusion`` matter for secure aggregation: with distributed
    noise a merchant sizes its noise share for the fewest honest contributors a released sum
    can have (privacy/secagg), never from a count the server sends.
    """

    releases: tuple[Release, ...]
    noise: str = "local"
    secure: bool = False
    dropout_tolerance: float = 0.3
    collusion: float = 0.0

    def __post_init__(self) -> None:
        names = [r.name for r in self.releases]
        if not names or len(set(names)) != len(names):
            raise PlanError(f"a plan lists each release kind once, got {names}")
        unknown = sorted(set(names) - set(KINDS))
        if unknown:
            raise PlanError(f"a plan names unknown release kinds {unknown}")
        if self.noise not in NOISE_PLACEMENTS:
            raise PlanError(f"noise must be one of {NOISE_PLACEMENTS}, got {self.noise!r}")
        if self.noise == "distributed" and not self.secure:
            raise PlanError("distributed noise needs secure aggregation")
        for field in ("dropout_tolerance", "collusion"):
            value = getattr(self, field)
            if not (math.isfinite(value) and 0 <= value < 0.5):
                raise PlanError(f"{field} must be in [0, 0.5), got {value}")

    def release(self, kind: str) -> Release | None:
        """The planned release of ``kind``, or None if the plan has none."""
        return next((r for r in self.releases if r.name == kind), None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": PLAN_VERSION,
                "releases": [
                    {
                        "name": r.name,
                        "noise_multiplier": r.noise_multiplier,
                        "count": r.count,
                        "sampling_rate": r.sampling_rate,
                    }
                    for r in self.releases
                ],
                "noise": self.noise,
                "secure": self.secure,
                "dropout_tolerance": self.dropout_tolerance,
                "collusion": self.collusion,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: object) -> RunPlan:
        """The plan a request carries; anything malformed is a ``PlanError``."""
        try:
            data = json.loads(str(text))
            if data.get("version") != PLAN_VERSION:
                raise PlanError(f"unknown plan version {data.get('version')!r}")
            releases = tuple(
                Release(
                    str(r["name"]),
                    float(r["noise_multiplier"]),
                    count=int(r["count"]),
                    sampling_rate=None if r["sampling_rate"] is None else float(r["sampling_rate"]),
                )
                for r in data["releases"]
            )
            return cls(
                releases,
                noise=str(data["noise"]),
                secure=bool(data["secure"]),
                dropout_tolerance=float(data["dropout_tolerance"]),
                collusion=float(data["collusion"]),
            )
        except PlanError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise PlanError(f"not a readable plan ({type(exc).__name__})") from None
