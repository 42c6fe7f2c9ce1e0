"""Turning a merchant's settings into a ready ``MerchantNode``.

Deployments name the data source, the HMAC key file, the privacy cap and a state
directory (the ledger file lives there). Simulations derive a per-merchant key and
seeded randomness instead, and may not be mistaken for a deployment: without a key
file and outside a simulation, the node refuses to start.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fedseg.client.errors import DataError
from fedseg.client.features import customer_features
from fedseg.client.loading import load_merchant_table
from fedseg.client.node import MerchantNode
from fedseg.client.recommender_rounds import offer_recommender
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.pseudonyms import Pseudonymizer, load_key_file

MERCHANT_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class MerchantSettings:
    data_path: str
    merchant_id: str
    epsilon_cap: float
    delta: float
    key_file: str = ""
    state_dir: str = ""
    simulation_seed: int | None = None  # set only by simulations
    holdout_last: bool = False  # simulations only: hide each customer's last item (evaluation)

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
        if not self.epsilon_cap > 0:
            raise DataError(
                f"merchant settings: 'epsilon-cap' must be positive, got {self.epsilon_cap}"
            )


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


def build_node(settings: MerchantSettings) -> MerchantNode:
    if settings.key_file:
        pseudonymizer = Pseudonymizer(load_key_file(settings.key_file))
    else:
        pseudonymizer = Pseudonymizer.for_simulation(settings.merchant_id, settings.simulation_seed)
    features, specs, _ = customer_features(settings.data_path, pseudonymizer=pseudonymizer)
    ledger_path = Path(settings.state_dir) / "ledger.json" if settings.state_dir else None
    if ledger_path is not None:
        ledger_path.parent.mkdir(parents=True, exist_ok=True)
    ledger = PrivacyLedger(
        ledger_path, epsilon_cap=settings.epsilon_cap, delta=settings.delta,
        durable=settings.simulation_seed is None,
    )  # fmt: skip
    seed = settings.simulation_seed
    merchant_key = _stable_int(settings.merchant_id)

    def rng_for(request_id: int) -> np.random.Generator:
        # Simulations: one stream per (seed, merchant, request), identical on every backend.
        if seed is None:
            return np.random.default_rng()
        return np.random.default_rng([seed, merchant_key, request_id])

    names = [s.name for s in specs]
    ordered = features if list(features.columns) == names else features[names]
    node = MerchantNode(
        ordered.to_numpy(dtype=np.float64),
        names=[s.name for s in specs],
        log=[s.log for s in specs],
        lower=[s.lower for s in specs],
        upper=[s.upper for s in specs],
        ledger=ledger,
        rng_for=rng_for,
    )
    offer_recommender(
        node,
        customer_ids=[str(u) for u in features.index],
        load_events=lambda: _item_events(settings.data_path, pseudonymizer),
        holdout_last=settings.holdout_last,
    )
    return node


def _item_events(data_path: str, pseudonymizer: Pseudonymizer):
    """The clean events table (same pseudonyms as the features), or None for a features table."""
    clean, report = load_merchant_table(data_path, pseudonymizer=pseudonymizer)
    return clean if report.kind == "events" else None


def _stable_int(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
