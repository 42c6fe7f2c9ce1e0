"""Per-customer behaviour drawn around each customer's persona.

Both the event-log and the feature-table generators start from these draws, so the two
kinds of synthetic federation describe the same customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fedseg.simulations.data.personas import Persona, persona_table

# Spread of a customer's own rates around the persona's (lognormal sigma).
INDIVIDUAL_SPREAD = 0.15
# Concentration of a customer's category preferences around the persona's (Dirichlet).
CATEGORY_CONCENTRATION = 30.0
# Customers join during the first quarter of their persona's active period.
JOIN_SPREAD = 0.25


@dataclass(frozen=True)
class Customers:
    """Individual parameters, one entry (or row) per customer."""

    persona: np.ndarray  # int persona index
    sessions: np.ndarray  # int visits in the window, >= 1
    view_seconds: np.ndarray  # median seconds per product page
    cart_rate: np.ndarray
    purchase_rate: np.ndarray
    start: np.ndarray  # first active moment, fraction of the window
    end: np.ndarray  # last active moment, fraction of the window
    category_cdf: np.ndarray  # (n, n_categories) cumulative category preference


def draw_customers(
    persona: np.ndarray, personas: tuple[Persona, ...], rng: np.random.Generator
) -> Customers:
    """Draw every customer's rates, active period and category taste from its persona."""
    n = persona.size

    def individual(field: str) -> np.ndarray:
        return persona_table(personas, field)[persona] * rng.lognormal(0, INDIVIDUAL_SPREAD, n)

    purchase_rate = np.minimum(individual("purchase_rate"), 1.0)
    cart_gap = persona_table(personas, "cart_rate") - persona_table(personas, "purchase_rate")
    cart_rate = np.minimum(purchase_rate + cart_gap[persona], 1.0)
    end = persona_table(personas, "active_until")[persona]
    taste = CATEGORY_CONCENTRATION * persona_table(personas, "category_weights")[persona]
    category_probs = rng.gamma(taste)  # normalized gammas = Dirichlet, vectorized per row
    category_cdf = np.cumsum(category_probs, axis=1) / category_probs.sum(axis=1, keepdims=True)
    category_cdf[:, -1] = 1.0
    return Customers(
        persona=persona,
        sessions=1 + rng.poisson(individual("sessions")),
        view_seconds=individual("view_seconds"),
        cart_rate=cart_rate,
        purchase_rate=purchase_rate,
        start=end * rng.uniform(0, JOIN_SPREAD, n),
        end=end,
        category_cdf=category_cdf,
    )
