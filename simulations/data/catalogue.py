"""The synthetic item catalogue and each persona's popularity over it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from fedseg.simulations.data.personas import CATEGORIES, PRICE_TIERS, Persona, persona_table
from fedseg.simulations.data.sampling import cumulative_rows

TIER_BASE_PRICE = (8.0, 30.0, 120.0, 500.0)
CATEGORY_PRICE_FACTOR = {"electronics": 2.0, "home": 1.3, "beauty": 0.6, "grocery": 0.3}
# Persona-level item popularity within a category is Zipf with this exponent over a
# persona-specific ranking, so per-segment popularity beats global popularity.
ZIPF_EXPONENT = 1.1
# Every tier keeps a little weight so customers still view items they rarely buy.
TIER_FLOOR = 0.01


@dataclass(frozen=True)
class Catalogue:
    """Items laid out category by category, `per_category` items each, tiers in order."""

    items: pd.DataFrame  # item_id, category, price, price_tier
    per_category: int

    @property
    def price(self) -> np.ndarray:
        return self.items["price"].to_numpy()


def make_catalogue(rng: np.random.Generator, *, per_category: int = 80) -> Catalogue:
    """Draw a catalogue: lognormal prices around a tier base price times a category factor."""
    if per_category < len(PRICE_TIERS):
        raise ValueError(f"per_category must be >= {len(PRICE_TIERS)}, got {per_category}")
    n_items = per_category * len(CATEGORIES)
    category = np.repeat(np.arange(len(CATEGORIES)), per_category)
    tier = np.tile(np.arange(per_category) * len(PRICE_TIERS) // per_category, len(CATEGORIES))
    factor = np.array([CATEGORY_PRICE_FACTOR.get(c, 1.0) for c in CATEGORIES])[category]
    price = np.asarray(TIER_BASE_PRICE)[tier] * factor * rng.lognormal(0.0, 0.25, n_items)
    items = pd.DataFrame(
        {
            "item_id": np.arange(n_items),
            "category": pd.Categorical.from_codes(category, categories=list(CATEGORIES)),
            "price": np.round(np.maximum(price, 0.5), 2),
            "price_tier": pd.Categorical.from_codes(tier, categories=list(PRICE_TIERS)),
        }
    )
    return Catalogue(items=items, per_category=per_category)


def persona_item_cdf(
    catalogue: Catalogue, personas: tuple[Persona, ...], rng: np.random.Generator
) -> np.ndarray:
    """Cumulative item distributions, row `persona * n_categories + category`.

    Within a category a persona weighs an item by its tier preference times a Zipf
    popularity over its own random ranking of the category's items.
    """
    per_cat, n_cat = catalogue.per_category, len(CATEGORIES)
    tier = catalogue.items["price_tier"].cat.codes.to_numpy()[:per_cat]
    tier_weights = persona_table(personas, "tier_weights") + TIER_FLOOR
    ranks = rng.permuted(np.tile(np.arange(per_cat), (len(personas) * n_cat, 1)), axis=1)
    zipf = 1.0 / (1.0 + ranks) ** ZIPF_EXPONENT
    weights = zipf * np.repeat(tier_weights[:, tier], n_cat, axis=0)
    return cumulative_rows(weights)
