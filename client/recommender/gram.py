"""Client half of DP-EASE: user-level sufficient statistics of one merchant's customers.

Two Gaussian releases, each with L2 sensitivity 1 per customer (neighbouring relation:
add/remove one customer at this merchant, with their whole history):

1. `item_popularity`: the sum of every customer's unit-normalized history row
   x_u / ||x_u||_2 (an item popularity vector). One row of norm 1 per customer, so
   sensitivity 1. Weighting by
   1/sqrt(|history|) gives every item of a customer more weight than a capped count
   (sqrt(L)/|history|) for any cap L <= |history|.
2. `item_gram`: the item-item co-occurrence (Gram) matrix sum_u x_u x_u^T over the
   items in `item_index`, with x_u normalized the same way: ||x_u x_u^T||_F = ||x_u||^2 = 1,
   so one customer moves the whole Gram by at most 1 in Frobenius norm. The upper triangle
   is released (off-diagonal entries scaled by sqrt(2) so the released vector's norm equals
   the Frobenius norm): one Gaussian release of sensitivity 1.

Nothing per customer leaves: the server fits EASE on the sums (`fit_recommender`) and each
merchant scores its own customers' histories locally. These functions return raw sums;
the merchant's node adds the noise of privacy/releases.py and charges its ledger.
"""

from __future__ import annotations

import numpy as np
from fedseg.client.recommender.histories import CustomerHistories
from fedseg.privacy.releases import gram_triangle
from scipy import sparse


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
    if not normalize:
        return matrix.tocsr()
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return (sparse.diags(1.0 / np.maximum(norms, 1e-300)) @ matrix).tocsr()


def item_popularity(histories: CustomerHistories, *, n_items: int) -> dict[str, np.ndarray]:
    """{"overall": (n_items,)}: the sum of every customer's unit-norm history row (raw, no
    noise: the node noises it with privacy/releases.py's popularity mechanism)."""
    rows = unit_history_rows(histories, np.arange(n_items))
    return {"overall": np.asarray(rows.sum(axis=0)).ravel()}


def item_gram(
    histories: CustomerHistories,
    *,
    item_index: np.ndarray,
    n_segments: int = 0,
    segment_weight: float = 1.0,
    normalize: bool = True,
) -> dict[str, np.ndarray]:
    """{"gram": triangle}: the Gram Σ x xᵀ over the items ``item_index`` then ``n_segments``
    segment columns, as its √2-scaled upper triangle (privacy/releases.py gram_triangle;
    raw, no noise). ``normalize=False`` gives exact 0/1 co-occurrence counts, whose
    sensitivity is unbounded: the node uses it only for a noiseless (ε = ∞) release."""
    item_index = np.asarray(item_index, dtype=np.int64)
    if item_index.ndim != 1 or len(np.unique(item_index)) != len(item_index):
        raise ValueError("item_index must be a 1-D array of distinct catalogue indices")
    if not segment_weight > 0:
        raise ValueError(f"segment_weight must be > 0, got {segment_weight}")
    rows = unit_history_rows(
        histories, item_index, n_segments=n_segments, segment_weight=segment_weight,
        normalize=normalize,
    )  # fmt: skip
    return {"gram": gram_triangle((rows.T @ rows).toarray())}


def _check_segments(histories: CustomerHistories, n_segments: int) -> None:
    segments = histories.segments
    if segments.size and not (0 <= segments.min() <= segments.max() < n_segments):
        raise ValueError(f"segment ids must lie in [0, {n_segments})")


def _catalogue_size(histories: CustomerHistories, columns: np.ndarray) -> int:
    largest = max((int(h.max()) for h in histories.items if len(h)), default=-1)
    if columns.size and columns.min() < 0:
        raise ValueError("item_index holds a negative catalogue index")
    return max(largest, int(columns.max(initial=-1))) + 1
