"""A merchant accepts a run's whole plan, or refuses it, before anything is released.

Acceptance checks the plan against the merchant's own policy (release kinds it answers,
its smallest noise multiplier, its DP-SGD sampling) and its own ledger (the whole plan must
fit the remaining cap at the merchant's δ). Afterwards every request must name a planned
release kind, and is answered with the planned noise multiplier at most the planned number
of times; what the merchant charges is built from its own mechanism (privacy/releases.py).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from fedseg.client.policy import MerchantPolicy
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.releases import DPSGD, TASK_OF


class PlanRefused(RuntimeError):
    """The merchant does not take part in this run; nothing was released."""


class OutsidePlan(ValueError):
    """A request the accepted plan does not cover; nothing was computed or released."""


def accept_plan(plan: RunPlan, policy: MerchantPolicy, ledger: PrivacyLedger) -> AcceptedPlan:
    """The accepted plan, or ``PlanRefused`` saying which rule of the policy it breaks."""
    for release in plan.releases:
        if release.name not in policy.allowed_releases:
            raise PlanRefused(f"this merchant's policy does not allow {release.name!r} releases")
        if release.noise_multiplier < policy.min_noise_multiplier:
            raise PlanRefused(
                f"{release.name!r} noise multiplier {release.noise_multiplier:g} is below this "
                f"merchant's minimum {policy.min_noise_multiplier:g}"
            )
        if release.name == DPSGD:
            if release.sampling_rate != policy.dpsgd_sampling_rate:
                raise PlanRefused(
                    f"DP-SGD sampling rate {release.sampling_rate} differs from this merchant's "
                    f"{policy.dpsgd_sampling_rate}"
                )
            if release.count % policy.dpsgd_steps:
                raise PlanRefused(
                    f"DP-SGD steps {release.count} are not whole local runs of "
                    f"{policy.dpsgd_steps} steps"
                )
        elif release.sampling_rate is not None:
            raise PlanRefused(f"{release.name!r} is not a subsampled release")
    if plan.secure and plan.collusion < policy.collusion:
        raise PlanRefused(
            f"the plan assumes at most {plan.collusion:g} of merchants collude; this merchant "
            f"assumes {policy.collusion:g}"
        )
    if plan.secure and plan.dropout_tolerance > policy.max_dropout_tolerance:
        raise PlanRefused(
            f"the plan tolerates {plan.dropout_tolerance:g} dropouts, above this merchant's "
            f"{policy.max_dropout_tolerance:g}"
        )
    if ledger.would_exceed(*plan.releases):
        raise PlanRefused(
            f"the plan would take this merchant to ε={ledger.cost_if(*plan.releases):.4f} at "
            f"δ={ledger.delta:g}, over its cap {ledger.epsilon_cap:g} "
            f"(already spent {ledger.spent():.4f})"
        )
    return AcceptedPlan(plan)


@dataclass
class AcceptedPlan:
    """The plan this merchant accepted for the current run, and what it has answered so far."""

    plan: RunPlan
    used: dict[str, int] = field(default_factory=dict)

    def planned(self, task: str, kind: object) -> Release:
        """The planned release a request for ``task`` naming release ``kind`` may draw on."""
        planned = self.plan.release(str(kind))
        if planned is None or TASK_OF.get(planned.name) != task:
            raise OutsidePlan(f"task {task!r} asks for release {kind!r}, which the plan lacks")
        return planned

    def consume(self, release: Release) -> None:
        """Count ``release`` against its plan entry: same noise multiplier and sampling rate,
        and never more uses in all than the plan lists."""
        planned = self.plan.release(release.name)
        if planned is None or (planned.noise_multiplier, planned.sampling_rate) != (
            release.noise_multiplier,
            release.sampling_rate,
        ):
            raise OutsidePlan(f"release {release.name!r} does not match the accepted plan")
        used = self.used.get(release.name, 0) + release.count
        if used > planned.count:
            raise OutsidePlan(f"all {planned.count} planned {release.name!r} releases are spent")
        self.used[release.name] = used

    def to_state(self) -> str:
        # json.dumps({"plan": ..., "used": ...}) with the plan's quoted text made once per
        # plan: the state is written after every message (the same bytes as before).
        return f'{{"plan": {_quoted_plan(self.plan)}, "used": {json.dumps(self.used)}}}'

    @classmethod
    def from_state(cls, text: str) -> AcceptedPlan:
        plan, used = _parsed_state(text)
        return cls(plan, dict(used))


@functools.lru_cache(maxsize=64)
def _quoted_plan(plan: RunPlan) -> str:
    return json.dumps(plan.to_json())


@functools.lru_cache(maxsize=256)
def _parsed_state(text: str) -> tuple[RunPlan, tuple[tuple[str, int], ...]]:
    """A state's plan and uses, parsed once per text: every merchant of a simulation is at
    the same point of the same plan, so their states are the same few texts."""
    data = json.loads(text)
    return _parsed_plan(data["plan"]), tuple(dict(data["used"]).items())


@functools.lru_cache(maxsize=64)
def _parsed_plan(text: str) -> RunPlan:
    """``RunPlan.from_json`` once per plan text (a RunPlan is immutable)."""
    return RunPlan.from_json(text)
