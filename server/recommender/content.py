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

import numpy as np
import pandas as pd

MULTI_VALUE_SEPARATOR = "|"
YEAR_BANDS = 8  # quantile bands of the catalogue's release years
PRICE_TIERS = 4  # quantile tiers of the catalogue's prices, when it has no price_tier


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
