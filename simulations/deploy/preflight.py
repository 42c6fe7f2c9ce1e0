"""A merchant's SuperNode inputs, checked before the SuperNode starts.

The ClientApp reads its data, key, ledger and roster only when the first request comes, so a
typo would otherwise show hours later as a refused run. ``check_merchant_inputs`` reads each
of them the way the ClientApp will (client/merchant.py) and fails with one line naming the
option; it returns the data's load report for the merchant to see what was kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fedseg.client.features import customer_features
from fedseg.client.load_report import LoadReport
from fedseg.client.merchant import as_of_timestamp
from fedseg.client.policy import MerchantPolicy
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.pseudonyms import Pseudonymizer, load_key_file
from fedseg.privacy.secagg import SecAggError, load_roster, load_signing_key

T = TypeVar("T")


def check_merchant_inputs(
    *,
    data: str,
    key_file: Path,
    epsilon_cap: float,
    state_dir: Path,
    strict: bool = False,
    signing_key: Path | None = None,
    secagg_roster: Path | None = None,
) -> LoadReport:
    """Every input of a merchant's node, read once; one ValueError naming the first bad one."""
    policy = _named("--epsilon-cap", lambda: MerchantPolicy(epsilon_cap=epsilon_cap))
    key = _named("--key-file", lambda: load_key_file(key_file))
    _named("--state-dir", lambda: _ledger(state_dir, policy))
    if signing_key is not None:
        _named("--signing-key", lambda: load_signing_key(_existing(signing_key)))
    if secagg_roster is not None:
        _named("--secagg-roster", lambda: load_roster(_existing(secagg_roster)))
    pseudonymizer = Pseudonymizer(key)
    _, _, report = _named(
        "--data",
        lambda: customer_features(
            data, pseudonymizer=pseudonymizer, as_of=as_of_timestamp(""), strict=strict
        ),
    )
    return report


def _named(option: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except (OSError, ValueError, SecAggError) as exc:
        raise ValueError(f"{option}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    return str(exc)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    return path


def _ledger(state_dir: Path, policy: MerchantPolicy) -> None:
    """The state directory exists or can be made, is writable, and its ledger is readable."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(state_dir, os.W_OK):
        raise PermissionError(13, "not writable", str(state_dir))
    PrivacyLedger(state_dir / "ledger.json", epsilon_cap=policy.epsilon_cap, delta=policy.delta)
