"""Client half of per-segment popularity: capped, noised item counts per segment.

Neighbouring relation: add/remove one customer at this merchant. A customer
counts at most once for each of at most `max_items_per_customer` (L) items, all
in their own segment, so the (segments x items) table moves by at most sqrt(L)
in L2 and the Gaussian mechanism with std z * sqrt(L) is (z)-calibrated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.privacy.mechanisms import GaussianMechanism, capped_histogram, histogram_sensitivity

if TYPE_CHECKING:
    from fedseg.privacy.ledger import PrivacyLedger

RELEASE_NAME = "recommender_popularity"


def segment_counts_mechanism(
    *, noise_multiplier: float, max_items_per_customer: int
) -> GaussianMechanism:
    """The Gaussian mechanism of one popularity release (for ledgers and reports)."""
    return GaussianMechanism(
        noise_multiplier=noise_multiplier,
        sensitivities={"counts": histogram_sensitivity(max_items_per_customer)},
    )


def segment_item_counts(
    histories: CustomerHistories,
    rng: np.random.Generator,
    *,
    n_items: int,
    n_segments: int,
    max_items_per_customer: int,
    noise_multiplier: float,
    ledger: PrivacyLedger | None = None,
) -> dict[str, np.ndarray]:
    """Noisy counts {"counts": (n_segments, n_items)} of this merchant's customers.

    The ledger is charged before the data is read, so an exhausted budget
    releases nothing.
    """
    if histories.segments.size and not (
        0 <= histories.segments.min() <= histories.segments.max() < n_segments
    ):
        raise ValueError(f"segment ids must lie in [0, {n_segments})")
    mechanism = segment_counts_mechanism(
        noise_multiplier=noise_multiplier, max_items_per_customer=max_items_per_customer
    )
    if ledger is not None:
        ledger.charge(mechanism.as_release(RELEASE_NAME))
    lengths = np.array([len(h) for h in histories.items], dtype=np.int64)
    customers = np.repeat(np.arange(len(histories)), lengths)
    items = np.concatenate(histories.items) if len(histories) else np.zeros(0, np.int64)
    if items.size and items.max() >= n_items:
        raise ValueError(f"item index {items.max()} outside the catalogue of {n_items}")
    cells = np.repeat(histories.segments, lengths) * n_items + items
    counts = capped_histogram(
        customers, cells, n_bins=n_segments * n_items, max_bins=max_items_per_customer, rng=rng
    )
    noisy = mechanism.release({"counts": counts}, rng)["counts"]
    return {"counts": noisy.reshape(n_segments, n_items)}
