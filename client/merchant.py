"""Turning a merchant's settings into a ready ``MerchantNode``.

Deployments name the data source, the HMAC key file, the state directory (the ledger lives
there) and the merchant's own privacy policy, all in the merchant's node config. Simulations
derive a per-merchant key and seeded randomness instead. Which of the two a node is, is
decided by the node config (Flower sets ``partition-id`` only in simulations), never by the
run config the server sends.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from fedseg.client.errors import DataError
from fedseg.client.feature_cache import load_or_build
from fedseg.client.features import customer_features
from fedseg.client.lifetime import offer_lifetime_value
from fedseg.client.loading import load_merchant_table
from fedseg.client.node import MerchantNode
from fedseg.client.policy import MerchantPolicy
from fedseg.client.recommender.offer import offer_recommender
from fedseg.client.secure import SecureIdentity, SessionMemory
from fedseg.client.tables import MERCHANT_SUFFIXES
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.protocol import run
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.pseudonyms import Pseudonymizer, load_key_file
from fedseg.privacy.secagg import (
    SecAggLimits,
    load_roster,
    load_signing_key,
    simulation_signing_key,
)

log = logging.getLogger("fedseg.merchant")


@dataclass(frozen=True)
class MerchantSettings:
    data_path: str
    merchant_id: str
    policy: MerchantPolicy
    as_of: str = ""  # public run parameter: recency is measured from it ("" = next UTC midnight)
    key_file: str = ""
    state_dir: str = ""
    simulation_seed: int | None = None  # simulations and the node-config test mode only
    holdout_last: bool = False  # simulations only: hide each customer's last item (evaluation)
    strict: bool = False  # refuse a table with any bad row instead of dropping and counting it
    secagg_roster: str = ""  # the pinned federation roster (secure aggregation)
    signing_key: str = ""  # this merchant's long-term Ed25519 key; "" in simulations (derived)

    def __post_init__(self) -> None:
        if not self.data_path:
            raise DataError("merchant settings: no data source (node config 'data-path')")
        if not self.key_file and self.simulation_seed is None:
            raise DataError(
                "merchant settings: no pseudonym key (node config 'key-file'); "
                "create one with `fedseg keygen --out merchant.key`"
            )
        if not self.state_dir and self.simulation_seed is None:
            raise DataError(
                "merchant settings: no state directory (node config 'state-dir'); the privacy "
                "ledger must live on disk to hold the cap across restarts and messages"
            )
        if self.holdout_last and self.simulation_seed is None:
            raise DataError("merchant settings: 'sim-holdout-last' is for simulations only")
        as_of_timestamp(self.as_of)  # an unreadable as-of fails here, before any data is read


def as_of_timestamp(text: str) -> pd.Timestamp:
    """The run's public ``as-of`` as a pandas UTC timestamp (privacy/protocol/run.py)."""
    try:
        return pd.Timestamp(run.as_of(text))
    except run.RunParameterError as exc:
        raise DataError(str(exc)) from None


def simulation_source(data_dir: str | Path, partition_id: int) -> Path:
    """The ``partition_id``-th merchant file of a federation directory (sorted by name)."""
    files = _merchant_files(str(data_dir))
    if not 0 <= partition_id < len(files):
        raise DataError(
            f"{data_dir}: no merchant file for partition {partition_id} ({len(files)} files)"
        )
    return files[partition_id]


@functools.lru_cache(maxsize=16)
def _merchant_files(data_dir: str) -> tuple[Path, ...]:
    """Listed once per process: a simulation asks for it on every message."""
    folder = Path(data_dir) / "merchants"
    if not folder.is_dir():
        raise DataError(f"{data_dir}: no merchants/ folder")
    return tuple(sorted(p for p in folder.iterdir() if p.suffix in MERCHANT_SUFFIXES))


def simulation_settings(partition_id: int, run: Mapping) -> MerchantSettings:
    """A simulated merchant: the simulator is every party, so its run config sets all."""
    if "sim-data-dir" not in run:
        raise DataError("simulation: no federation (run config 'sim-data-dir')")
    source = simulation_source(str(run["sim-data-dir"]), partition_id)
    state_root = str(run.get("sim-state-dir", ""))
    cap = run.get("sim-epsilon-cap", run.get("epsilon", 1.0))
    own = {
        "epsilon-cap": cap,
        "delta": run.get("delta", 1e-6),
        "collusion": run.get("collusion", 0),
    }
    policy = MerchantPolicy.from_mapping(own, where="simulation run config")
    return MerchantSettings(
        data_path=str(source),
        merchant_id=source.stem,
        policy=policy,
        as_of=str(run.get("as-of", "")),
        state_dir=str(Path(state_root) / source.stem) if state_root else "",
        simulation_seed=max(int(run.get("seed", 0)), 0),
        holdout_last=str(run.get("sim-holdout-last", False)).lower() in ("1", "true", "yes"),
        secagg_roster=str(run.get("secagg-roster", "")),
    )


def build_node(settings: MerchantSettings, schema: FeatureSchema) -> MerchantNode:
    """The merchant's node for a run applying the operator's ``schema``: its table loaded,
    cleaned, pseudonymized and featurized (DataError naming the file if it does not fit)."""
    if settings.key_file:
        pseudonymizer = Pseudonymizer(load_key_file(settings.key_file))
    else:
        pseudonymizer = Pseudonymizer.for_simulation(settings.merchant_id, settings.simulation_seed)
    as_of = as_of_timestamp(settings.as_of)
    prepared = load_or_build(settings, schema, lambda: customer_features(
        settings.data_path, pseudonymizer=pseudonymizer, schema=schema, as_of=as_of,
        strict=settings.strict,
    ))  # fmt: skip
    cached = " (prepared features from this merchant's cache)" if prepared.from_cache else ""
    log.info("merchant %s: %s%s", settings.merchant_id, prepared.summary, cached)  # own log only
    ledger_path = Path(settings.state_dir) / "ledger.json" if settings.state_dir else None
    policy = settings.policy
    ledger = PrivacyLedger(
        ledger_path, epsilon_cap=policy.epsilon_cap, delta=policy.delta,
        durable=settings.simulation_seed is None,
    )  # fmt: skip
    seed = settings.simulation_seed
    node = MerchantNode(
        prepared.matrix,
        schema=prepared.schema,
        ledger=ledger,
        policy=policy,
        noise_seed=None if seed is None else (seed, _stable_int(settings.merchant_id)),
    )
    node.secure_identity = secure_identity(settings)
    offer_recommender(
        node,
        customer_ids=prepared.customer_ids,
        load_events=lambda: _item_events(settings.data_path, pseudonymizer, as_of),
        holdout_last=settings.holdout_last,
    )
    offer_lifetime_value(
        node,
        customer_ids=prepared.customer_ids,
        load_events=lambda: _item_events(settings.data_path, pseudonymizer, as_of),
        as_of=as_of,
    )
    return node


def secure_identity(settings: MerchantSettings) -> SecureIdentity | None:
    """The merchant's identity in secure rounds, if it has a pinned roster: its own signing
    key (derived from the seed in simulations and the test mode), the sessions it joined
    (kept beside its ledger), and its own limits."""
    if not settings.secagg_roster:
        return None
    try:
        roster = load_roster(settings.secagg_roster)
        if settings.signing_key:
            key = load_signing_key(settings.signing_key)
        elif settings.simulation_seed is not None:
            key = simulation_signing_key(settings.simulation_seed, settings.merchant_id)
        else:
            raise DataError("merchant settings: no signing key (node config 'signing-key')")
    except (OSError, ValueError) as exc:
        raise DataError(f"merchant settings: secure aggregation: {exc}") from None
    memory = Path(settings.state_dir) / "secagg-sessions.txt" if settings.state_dir else None
    limits = SecAggLimits(
        max_dropout_tolerance=settings.policy.max_dropout_tolerance,
        min_collusion=settings.policy.collusion,
    )
    return SecureIdentity(settings.merchant_id, key, roster, SessionMemory(memory), limits)


def _item_events(data_path: str, pseudonymizer: Pseudonymizer, as_of: pd.Timestamp):
    """The clean events of the run's window (same pseudonyms as the features), or None for a
    features table. Loaded again on the first recommender request rather than kept: a
    segmentation-only run should not hold every event in memory."""
    clean, report = load_merchant_table(data_path, pseudonymizer=pseudonymizer, as_of=as_of)
    return clean if report.kind == "events" else None


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
