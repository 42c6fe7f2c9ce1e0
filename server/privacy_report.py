"""The privacy report of a model: everything the model is built on, composed.

A warm-started model (or one reusing an earlier model's statistics) republishes that earlier
model's scaler and marginals, so its guarantee is the composition of this run's releases and
every release the earlier model was built on. ``epsilon`` is that composed total;
``run_epsilon`` and ``releases`` are this run's alone; ``inherited`` lists the earlier ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedseg.privacy.accounting import Release, epsilon_spent
from fedseg.privacy.ledger import PrivacyLedger


def privacy_report(ledger: PrivacyLedger, *, built_on: Mapping[str, Any] | None) -> dict:
    """``ledger``'s report, composed with what the earlier model ``built_on`` spent."""
    report = ledger.report()
    report["run_epsilon"] = report["epsilon"]
    if built_on is None:
        return report
    earlier = built_on.get("privacy", {})
    inherited = [*earlier.get("inherited", {}).get("releases", []), *earlier.get("releases", [])]
    every = [*ledger.releases, *(_release(entry) for entry in inherited)]
    report["inherited"] = {
        "epsilon": epsilon_spent([_release(e) for e in inherited], delta=ledger.delta)
        if inherited
        else 0.0,
        "releases": inherited,
    }
    report["epsilon"] = epsilon_spent(every, delta=ledger.delta, accountant=ledger.accountant)
    return report


def _release(entry: Mapping[str, Any]) -> Release:
    return Release(
        str(entry["name"]),
        float(entry["noise_multiplier"]),
        count=int(entry["count"]),
        sampling_rate=entry.get("sampling_rate"),
    )
