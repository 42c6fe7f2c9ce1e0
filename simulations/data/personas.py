"""Planted customer personas: how each kind of customer browses, buys, pays and what it buys.

Five hand-written personas cover the classic e-commerce segments; for k > 5 further personas
are drawn deterministically (from the persona index alone, not the run's seed) so a given k
always plants the same segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fedseg.privacy.protocol.builtin import ECOMMERCE_CATEGORIES

# The feature builder owns the category vocabulary (its share_<category> columns).
CATEGORIES: tuple[str, ...] = tuple(ECOMMERCE_CATEGORIES)
PRICE_TIERS = ("budget", "mid", "premium", "luxury")


@dataclass(frozen=True)
class Persona:
    """One planted segment. Rates are means; each customer gets an individual lognormal factor.

    sessions: visits in the one-year observation window; views_per_session: product pages
    per visit; view_seconds: median seconds on a page; cart_rate / purchase_rate: chance a
    viewed item is carted / bought; review_rate: chance a purchase is reviewed;
    quantity: mean units per purchase; tier_weights / category_weights: what it buys;
    active_until: fraction of the window after which the customer stops coming (dormancy).
    """

    name: str
    sessions: float
    views_per_session: float
    view_seconds: float
    cart_rate: float
    purchase_rate: float
    review_rate: float
    mean_rating: float
    quantity: float
    tier_weights: tuple[float, ...]
    category_weights: tuple[float, ...]
    active_until: float = 1.0

    def __post_init__(self) -> None:
        if min(self.sessions, self.views_per_session, self.view_seconds) <= 0:
            raise ValueError(f"persona {self.name}: activity rates must be positive")
        if not 0 <= self.purchase_rate <= self.cart_rate <= 1:
            raise ValueError(f"persona {self.name}: need 0 <= purchase_rate <= cart_rate <= 1")
        if not 0 <= self.review_rate <= 1 or self.quantity < 1:
            raise ValueError(f"persona {self.name}: review_rate in [0,1], quantity >= 1")
        if len(self.tier_weights) != len(PRICE_TIERS):
            raise ValueError(f"persona {self.name}: one tier weight per tier {PRICE_TIERS}")
        if len(self.category_weights) != len(CATEGORIES):
            raise ValueError(f"persona {self.name}: one category weight per {CATEGORIES}")
        if not 0 < self.active_until <= 1:
            raise ValueError(f"persona {self.name}: active_until in (0, 1]")


def _favourites(main: int, second: int) -> tuple[float, ...]:
    """Category weights: most purchases in `main`, some in `second`, a few anywhere else."""
    weights = [0.25 / (len(CATEGORIES) - 2)] * len(CATEGORIES)
    weights[main], weights[second] = 0.55, 0.20
    return tuple(weights)


# Category indices follow CATEGORIES: electronics, fashion, home, beauty, grocery, sports.
BASE_PERSONAS = (
    Persona("high_value_loyal", 16, 3.0, 45, 0.32, 0.25, 0.35, 4.5, 1.5,
            (0.15, 0.50, 0.35, 0.00), _favourites(2, 1)),
    Persona("bargain_hunter", 10, 6.0, 15, 0.30, 0.12, 0.05, 3.4, 2.5,
            (0.80, 0.17, 0.03, 0.00), _favourites(4, 2)),
    Persona("window_shopper", 5, 7.0, 110, 0.04, 0.005, 0.0, 3.0, 1.0,
            (0.15, 0.30, 0.30, 0.25), _favourites(1, 3)),
    Persona("occasional_big_spender", 3.5, 3.0, 75, 0.65, 0.60, 0.15, 4.0, 1.0,
            (0.00, 0.00, 0.25, 0.75), _favourites(0, 5)),
    Persona("dormant", 1.5, 2.0, 25, 0.10, 0.07, 0.05, 3.2, 1.2,
            (0.30, 0.50, 0.20, 0.00), _favourites(3, 5), active_until=0.15),
)  # fmt: skip


def make_personas(k: int) -> tuple[Persona, ...]:
    """The first k personas: the five base ones, then deterministic extra ones."""
    if k < 1:
        raise ValueError(f"segments must be >= 1, got {k}")
    extra = tuple(_extra_persona(index) for index in range(len(BASE_PERSONAS), k))
    return (BASE_PERSONAS + extra)[:k]


def _extra_persona(index: int) -> Persona:
    """A distinct persona for index >= 5, drawn from a generator keyed by the index only."""
    rng = np.random.default_rng([0xFED5E6, index])
    purchase_rate = float(np.exp(rng.uniform(np.log(0.004), np.log(0.35))))
    first = index % len(CATEGORIES)
    second = (first + 1 + int(rng.integers(len(CATEGORIES) - 1))) % len(CATEGORIES)
    return Persona(
        name=f"persona_{index}",
        sessions=float(np.exp(rng.uniform(np.log(1.5), np.log(16)))),
        views_per_session=float(rng.uniform(1.5, 7)),
        view_seconds=float(np.exp(rng.uniform(np.log(15), np.log(120)))),
        cart_rate=min(1.0, purchase_rate * float(rng.uniform(1.2, 3))),
        purchase_rate=purchase_rate,
        review_rate=float(rng.uniform(0, 0.4)),
        mean_rating=float(rng.uniform(2.5, 4.8)),
        quantity=float(rng.uniform(1, 2.5)),
        tier_weights=tuple(float(w) for w in rng.dirichlet(np.full(len(PRICE_TIERS), 0.7))),
        category_weights=_favourites(first, second),
        active_until=float(rng.choice([0.3, 0.6, 1.0], p=[0.2, 0.2, 0.6])),
    )


def persona_table(personas: tuple[Persona, ...], field: str) -> np.ndarray:
    """One attribute stacked over personas (shape (k,) or (k, width)), for vectorized draws."""
    return np.array([getattr(p, field) for p in personas], dtype=float)
