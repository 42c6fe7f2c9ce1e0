"""Content scoring R(x, y) = Σᵢ wᵢ cᵢ(x) cᵢ(y) over public item attributes.

c(y): item y's attribute indicators, read from the public catalogue (category or genres,
price tier, release-year band). c(x): the share of customer x's history carrying each
attribute, computed by the merchant from its own data and never released. w: one weight
per attribute, sqrt(total popularity mass / the attribute's mass) from the DP popularity
release: a rare attribute a customer keeps choosing says more than a common one (an IDF).
Everything here is public data, local data or post-processing of a DP release: no budget.

It scores items nobody has interacted with yet (only their attributes are known) and, added
to DP-EASE, carries the personalization when noise leaves EASE only a few components.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MULTI_VALUE_SEPARATOR = "|"
YEAR_BANDS = 8  # quantile bands of the catalogue's release years
PRICE_TIERS = 4  # quantile tiers of the catalogue's prices, when it has no price_tier


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


def catalogue_attributes(items: pd.DataFrame) -> tuple[tuple[str, ...], np.ndarray]:
    """Attribute names and the (items x attributes) 0/1 matrix of a catalogue, rows in order.

    Uses what the catalogue has: `category` and `genres` (several values joined by "|"),
    `price_tier`, else quartile tiers of `price`, and quantile bands of `year`. A missing
    value gives the item no attribute of that kind. No usable column: no attributes.
    """
    blocks: list[tuple[str, pd.Series]] = []
    for column in ("category", "genres"):
        if column in items.columns:
            blocks.append((column, items[column]))
    if "price_tier" in items.columns:
        blocks.append(("price_tier", items["price_tier"]))
    elif "price" in items.columns:
        blocks.append(("price_tier", _bands(items["price"], PRICE_TIERS)))
    if "year" in items.columns:
        blocks.append(("year", _bands(items["year"], YEAR_BANDS)))
    names: list[str] = []
    columns: list[np.ndarray] = []
    for kind, values in blocks:
        lists = [_values(v) for v in values.tolist()]
        for level in sorted({value for row in lists for value in row}):
            names.append(f"{kind}={level}")
            columns.append(np.array([level in row for row in lists], dtype=np.float64))
    matrix = np.column_stack(columns) if columns else np.zeros((len(items), 0))
    return tuple(names), matrix


def attribute_weights(popularity: np.ndarray, indicators: np.ndarray) -> np.ndarray:
    """sqrt(total mass / attribute mass) from the (noisy) item popularity, negatives clipped."""
    popularity = np.clip(np.asarray(popularity, dtype=np.float64), 0.0, None)
    if popularity.shape != (len(indicators),):
        raise ValueError(f"popularity covers {popularity.size} items, catalogue {len(indicators)}")
    mass = popularity @ indicators
    floor = max(float(mass.sum()), 1e-12) * 1e-3  # an attribute nobody chose is not infinite
    return np.sqrt(max(float(mass.sum()), 1e-12) / np.maximum(mass, floor))


def _bands(values: pd.Series, bands: int) -> pd.Series:
    """Quantile band labels ("q1".."q<bands>") of a numeric column; missing stays missing."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() < bands:
        return pd.Series([None] * len(values), index=values.index, dtype=object)
    codes = pd.qcut(numeric, bands, labels=False, duplicates="drop")
    return codes.map(lambda code: None if pd.isna(code) else f"q{int(code) + 1}")


def _values(value: object) -> set[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return set()
    parts = str(value).split(MULTI_VALUE_SEPARATOR)
    return {part.strip() for part in parts if part.strip() and part.strip().lower() != "nan"}


def choose_candidate(gains: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The candidate row with the largest noisy gain in hits, or a row of zeros (the
    baseline scorer) if no candidate gains."""
    gains, candidates = np.asarray(gains, dtype=np.float64), np.asarray(candidates)
    if gains.shape != (len(candidates),) or not gains.size:
        raise ValueError(f"{gains.size} gains for {len(candidates)} candidates")
    if not np.all(np.isfinite(gains)):
        raise ValueError("gains contain NaN or inf")
    best = int(np.argmax(gains))
    return candidates[best] if gains[best] > 0 else np.zeros_like(candidates[best])
