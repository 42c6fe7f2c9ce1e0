"""Content scoring's published part: item attribute indicators and their weights, and each
customer's affinity R(x, y) = Σ wᵢ cᵢ(x) cᵢ(y) computed from their own history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContentModel:
    """Item x attribute indicators (public) and attribute weights (from the DP release)."""

    names: tuple[str, ...]
    indicators: np.ndarray  # (n_items, n_attributes) of 0/1
    weights: np.ndarray  # (n_attributes,)

    def __post_init__(self) -> None:
        if self.indicators.ndim != 2 or self.indicators.shape[1] != len(self.names):
            raise ValueError("indicators must be (items x attributes), one column per name")
        if self.weights.shape != (len(self.names),) or not np.all(self.weights >= 0):
            raise ValueError("weights must be one non-negative number per attribute")

    @property
    def n_items(self) -> int:
        return len(self.indicators)

    @property
    def kinds(self) -> np.ndarray:
        """Kind id per attribute column ("category=x" and "category=y" share one)."""
        order: dict[str, int] = {}
        return np.array([order.setdefault(n.split("=", 1)[0], len(order)) for n in self.names])

    def affinity(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(customers x items) R(x, y), scaled to [0, 1] per customer (0 for empty histories)."""
        profiles = np.zeros((len(histories), len(self.names)))
        for row, history in enumerate(histories):
            if len(history):
                profiles[row] = self.indicators[np.asarray(history, dtype=np.int64)].mean(axis=0)
        scores = (profiles * self.weights) @ self.indicators.T
        return scores / (scores.max(axis=1, keepdims=True, initial=0.0) + 1e-12)

    def to_dict(self) -> dict:
        """Compact JSON form: each item's attribute positions instead of a dense matrix."""
        return {
            "names": list(self.names),
            "items": [np.flatnonzero(row).tolist() for row in self.indicators],
            "weights": self.weights.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ContentModel:
        names = tuple(str(name) for name in data["names"])
        indicators = np.zeros((len(data["items"]), len(names)))
        for item, positions in enumerate(data["items"]):
            indicators[item, np.asarray(positions, dtype=np.int64)] = 1.0
        return cls(names, indicators, np.asarray(data["weights"], dtype=np.float64))
