"""Per-segment popularity, personalized by the customer's own attribute mix (the seed
paper's "recommend by segment", made personal with content scoring R(x, y) per segment).

    score(x, y) = P(y | s) · Πₖ P(aₖ(y) | x) / P(aₖ(y) | s)

s is customer x's segment, P(y | s) the segment's item distribution (from the segment block
of the DP Gram: post-processing), aₖ(y) item y's value of attribute kind k (category, price
tier, year band: public), P(a | s) the segment's attribute mix (from P(· | s)), and
P(a | x) = (κ P(a | s) + n_a(x)) / (κ + n(x)) the customer's own mix, shrunk towards the
segment's with κ pseudo-items (n_a(x): the customer's items with value a; local, never
released). With κ → ∞ it is per-segment popularity; small κ trusts the customer's history.
Where customers of a segment differ in what they like (categories, price tiers) it ranks
better than per-segment popularity; which κ, if any, is chosen by the merchants' DP check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fedseg.privacy.published.content import ContentModel

FLOOR = 1e-3  # share of P(y | s) spread by overall popularity (items outside the Gram)


@dataclass(frozen=True)
class SegmentLift:
    """P(y | s): one item distribution per segment (rows sum to 1)."""

    segment_items: np.ndarray  # (segments, items)

    def __post_init__(self) -> None:
        if self.segment_items.ndim != 2 or not np.all(self.segment_items >= 0):
            raise ValueError("segment_items must be a non-negative (segments x items) array")

    def scores(
        self,
        histories: Sequence[np.ndarray],
        segments: np.ndarray,
        content: ContentModel,
        *,
        strength: float,
    ) -> np.ndarray:
        """(customers x items) scores for customers of `segments` with these histories."""
        if not strength > 0:
            raise ValueError(f"strength must be > 0, got {strength}")
        if content.n_items != self.segment_items.shape[1]:
            raise ValueError("the content model and segment_items cover different items")
        segments = np.asarray(segments, dtype=np.int64)
        out = self.segment_items[segments].copy()
        for kind in np.unique(content.kinds):
            columns = content.indicators[:, content.kinds == kind]
            segment_mix = _rows_to_one(self.segment_items @ columns)[segments]
            own = np.zeros((len(histories), columns.shape[1]))
            for row, history in enumerate(histories):
                own[row] = columns[np.asarray(history, dtype=np.int64)].sum(axis=0)
            mix = (strength * segment_mix + own) / (strength + own.sum(axis=1, keepdims=True))
            lift = (mix / np.maximum(segment_mix, 1e-12)) @ columns.T
            out *= np.where(columns.sum(axis=1) > 0, lift, 1.0)  # no value of this kind: 1
        return out

    @classmethod
    def from_gram_block(
        cls, block: np.ndarray, item_index: np.ndarray, overall: np.ndarray
    ) -> SegmentLift:
        """P(y | s) from the Gram's (segments x item_index) block, negatives clipped; items
        outside item_index get a FLOOR share by overall popularity so they still rank."""
        spread = np.clip(np.asarray(overall, dtype=np.float64), 0.0, None)
        spread = spread / max(spread.sum(), 1e-12)
        items = np.zeros((len(block), len(overall)))
        items[:, item_index] = np.clip(block, 0.0, None)
        return cls((1 - FLOOR) * _rows_to_one(items) + FLOOR * spread)


def _rows_to_one(matrix: np.ndarray) -> np.ndarray:
    totals = matrix.sum(axis=1, keepdims=True)
    uniform = np.full_like(matrix, 1.0 / max(matrix.shape[1], 1))
    return np.where(totals > 0, matrix / np.where(totals > 0, totals, 1.0), uniform)
