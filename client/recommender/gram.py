"""Client half of DP-EASE: user-level sufficient statistics of one merchant's customers.

Two Gaussian releases, each with L2 sensitivity 1 per customer (neighbouring relation:
add/remove one customer at this merchant, with their whole history):

1. `popularity_statistics`: the sum of every customer's unit-normalized history row
   x_u / ||x_u||_2 (an item popularity vector), optionally also per segment. One row of
   norm 1 per customer per part, so each part has sensitivity 1. Weighting by
   1/sqrt(|history|) gives every item of a customer more weight than a capped count
   (sqrt(L)/|history|) for any cap L <= |history|.
2. `gram_statistics`: the item-item co-occurrence (Gram) matrix sum_u x_u x_u^T over the
   items in `item_index`, with x_u normalized the same way: ||x_u x_u^T||_F = ||x_u||^2 = 1,
   so one customer moves the whole Gram by at most 1 in Frobenius norm. The upper triangle
   is released (off-diagonal entries scaled by sqrt(2) so the released vector's norm equals
   the Frobenius norm) and mirrored back: one Gaussian release of sensitivity 1.

Nothing per customer leaves: the server fits EASE on the sums (`fit_recommender`) and each
merchant scores its own customers' histories locally. `noise_share` < 1 is distributed
noise: this merchant adds that fraction of the noise variance and a secure sum of all
merchants' shares carries the full sigma; the ledger is charged the full release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.privacy.mechanisms import GaussianMechanism
from scipy import sparse

if TYPE_CHECKING:
    from fedseg.privacy.ledger import PrivacyLedger

POPULARITY_RELEASE = "recommender_item_popularity"
GRAM_RELEASE = "recommender_gram"


def unit_history_rows(
    histories: CustomerHistories,
    columns: np.ndarray,
    *,
    n_segments: int = 0,
    segment_weight: float = 1.0,
    normalize: bool = True,
) -> sparse.csr_matrix:
    """Customers x (len(columns) + n_segments): 1 where the customer has the item, rows norm 1.

    `columns[j]` is the catalogue index of column j; items outside `columns` are ignored
    (before normalizing). With n_segments > 0 the customer's segment is one more 1-column
    (a pseudo-item everyone in the segment has, of value `segment_weight` before the row is
    normalized), so EASE learns segment -> item weights.
    A customer with none of the items and no segment column keeps an all-zero row.
    """
    columns = np.asarray(columns, dtype=np.int64)
    lookup = np.full(_catalogue_size(histories, columns), -1, dtype=np.int64)
    lookup[columns] = np.arange(len(columns))
    lengths = np.array([len(h) for h in histories.items], dtype=np.int64)
    flat = np.concatenate(histories.items) if len(histories) else np.zeros(0, np.int64)
    rows, cols = np.repeat(np.arange(len(histories)), lengths), lookup[flat]
    rows, cols = rows[cols >= 0], cols[cols >= 0]
    matrix = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(histories), len(columns))
    )
    matrix.data[:] = 1.0  # histories hold distinct items; guard against duplicates anyway
    if n_segments > 0:
        _check_segments(histories, n_segments)
        segment = sparse.csr_matrix(
            (
                np.full(len(histories), float(segment_weight)),
                (np.arange(len(histories)), histories.segments),
            ),
            shape=(len(histories), n_segments),
        )
        matrix = sparse.hstack([matrix, segment]).tocsr()
    if normalize:
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        matrix = sparse.diags(1.0 / np.maximum(norms, 1e-300)) @ matrix
    return matrix.tocsr()


def popularity_mechanism(*, noise_multiplier: float, segment_share: float) -> GaussianMechanism:
    """Mechanism of the popularity release: 'overall' (+ 'segments' when segment_share > 0)."""
    if not 0 <= segment_share < 1:
        raise ValueError(f"segment_share must be in [0, 1), got {segment_share}")
    if segment_share == 0:
        return GaussianMechanism(noise_multiplier=noise_multiplier, sensitivities={"overall": 1.0})
    return GaussianMechanism(
        noise_multiplier=noise_multiplier,
        sensitivities={"overall": 1.0, "segments": 1.0},
        shares={"overall": 1.0 - segment_share, "segments": segment_share},
    )


def gram_mechanism(*, noise_multiplier: float) -> GaussianMechanism:
    """Mechanism of the Gram release: the scaled upper triangle, sensitivity 1."""
    return GaussianMechanism(noise_multiplier=noise_multiplier, sensitivities={"gram": 1.0})


def popularity_statistics(
    histories: CustomerHistories,
    *,
    n_items: int,
    n_segments: int,
    noise_multiplier: float,
    rng: np.random.Generator,
    segment_share: float = 0.0,
    noise_share: float = 1.0,
    ledger: PrivacyLedger | None = None,
) -> dict[str, np.ndarray]:
    """Noisy {"overall": (n_items,)} and, if segment_share > 0, {"segments": (K, n_items)}.

    The ledger is charged before any data is read, so a refused request releases nothing.
    """
    _check_noise_share(noise_share)
    mechanism = popularity_mechanism(noise_multiplier=noise_multiplier, segment_share=segment_share)
    if ledger is not None:
        ledger.charge(mechanism.as_release(POPULARITY_RELEASE))
    _check_segments(histories, n_segments)
    largest = max((int(h.max()) for h in histories.items if len(h)), default=-1)
    if largest >= n_items:
        raise ValueError(f"item index {largest} outside the catalogue of {n_items}")
    rows = unit_history_rows(histories, np.arange(n_items))
    values = {"overall": np.asarray(rows.sum(axis=0)).ravel()}
    if segment_share > 0:
        by_segment = sparse.csr_matrix(
            (np.ones(len(histories)), (histories.segments, np.arange(len(histories)))),
            shape=(n_segments, len(histories)),
        )
        values["segments"] = (by_segment @ rows).toarray()
    return _noised(mechanism, values, noise_share, rng)


def gram_statistics(
    histories: CustomerHistories,
    *,
    item_index: np.ndarray,
    noise_multiplier: float,
    rng: np.random.Generator,
    n_segments: int = 0,
    segment_weight: float = 1.0,
    noise_share: float = 1.0,
    normalize: bool = True,
    ledger: PrivacyLedger | None = None,
) -> dict[str, np.ndarray]:
    """Noisy {"gram": (N + S, N + S)} over the items `item_index` then S=n_segments segments.

    `normalize=False` (the exact 0/1 co-occurrence counts, unbounded sensitivity) is only
    allowed without noise: it is the non-private federated reference.
    """
    _check_noise_share(noise_share)
    if not normalize and noise_multiplier > 0:
        raise ValueError("normalize=False has no bounded sensitivity; only noise_multiplier=0")
    item_index = np.asarray(item_index, dtype=np.int64)
    if item_index.ndim != 1 or len(np.unique(item_index)) != len(item_index):
        raise ValueError("item_index must be a 1-D array of distinct catalogue indices")
    mechanism = gram_mechanism(noise_multiplier=noise_multiplier)
    if ledger is not None:
        ledger.charge(mechanism.as_release(GRAM_RELEASE))
    if not segment_weight > 0:
        raise ValueError(f"segment_weight must be > 0, got {segment_weight}")
    rows = unit_history_rows(
        histories,
        item_index,
        n_segments=n_segments,
        segment_weight=segment_weight,
        normalize=normalize,
    )
    gram = (rows.T @ rows).toarray()
    upper = np.triu_indices(gram.shape[0])
    scale = np.where(upper[0] == upper[1], 1.0, np.sqrt(2.0))
    noisy = _noised(mechanism, {"gram": gram[upper] * scale}, noise_share, rng)["gram"]
    released = np.zeros_like(gram)
    released[upper] = noisy / scale
    return {"gram": released + np.triu(released, 1).T}


def _noised(mechanism, values, noise_share, rng):
    scaled = GaussianMechanism(
        noise_multiplier=mechanism.noise_multiplier * np.sqrt(noise_share),
        sensitivities=mechanism.sensitivities,
        shares=mechanism.shares,
    )
    return scaled.release(values, rng)


def _check_noise_share(noise_share: float) -> None:
    if not 0 < noise_share <= 1:
        raise ValueError(f"noise_share must be in (0, 1], got {noise_share}")


def _check_segments(histories: CustomerHistories, n_segments: int) -> None:
    segments = histories.segments
    if segments.size and not (0 <= segments.min() <= segments.max() < n_segments):
        raise ValueError(f"segment ids must lie in [0, {n_segments})")


def _catalogue_size(histories: CustomerHistories, columns: np.ndarray) -> int:
    largest = max((int(h.max()) for h in histories.items if len(h)), default=-1)
    if columns.size and columns.min() < 0:
        raise ValueError("item_index holds a negative catalogue index")
    return max(largest, int(columns.max(initial=-1))) + 1
