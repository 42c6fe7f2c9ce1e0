"""`--kind features`: per-customer feature rows drawn straight from the customer draws.

No event log is materialized, so federations of millions of customers fit in memory.
Column names and meanings are those of the e-commerce schema (privacy/protocol/builtin.py).
Counts follow the same laws as the event generator (views per session, Binomial carts and
orders, Binomial reviews); the sum of page-view durations uses the Fenton-Wilkinson
lognormal approximation, and the last visit is the maximum of the session times.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fedseg.privacy.protocol.builtin import KNOWN_FEATURES
from fedseg.simulations.data.catalogue import Catalogue
from fedseg.simulations.data.customers import Customers
from fedseg.simulations.data.events import VIEW_SPREAD, WINDOW_SECONDS
from fedseg.simulations.data.personas import CATEGORIES, Persona, persona_table
from fedseg.simulations.data.sampling import sample_from_rows

SECONDS_PER_DAY = 86_400
# As in client/features.py: a customer who never bought gets recency's public upper bound.
NEVER_BOUGHT_DAYS = KNOWN_FEATURES["recency_days"].upper


def feature_table(
    customers: Customers,
    personas: tuple[Persona, ...],
    catalogue: Catalogue,
    item_cdf: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per customer: user_id plus the default feature columns of client/features.py."""
    n = customers.persona.size
    per_session = persona_table(personas, "views_per_session")[customers.persona]
    views = customers.sessions + rng.poisson(customers.sessions * (per_session - 1))
    orders = rng.binomial(views, customers.purchase_rate)
    browse_gap = (customers.cart_rate - customers.purchase_rate) / np.maximum(
        1 - customers.purchase_rate, 1e-12
    )
    carts = orders + rng.binomial(views - orders, np.clip(browse_gap, 0, 1))
    reviews = rng.binomial(orders, persona_table(personas, "review_rate")[customers.persona])
    spend = _spend(customers, personas, catalogue, item_cdf, orders, rng)
    first, last = _first_and_last(customers.sessions, rng)
    span = customers.end - customers.start
    # Orders happen in at most `sessions` visits: the last is the latest of that many moments.
    visits_with_orders = np.maximum(np.minimum(orders, customers.sessions), 1)
    last_order = customers.start + span * rng.random(n) ** (1.0 / visits_with_orders)
    window_days = WINDOW_SECONDS / SECONDS_PER_DAY
    columns = {
        "user_id": np.arange(n),
        "browse_minutes": _browsing_seconds(customers.view_seconds, views, rng) / 60.0,
        "orders": orders.astype(float),
        "spend": spend,
        "pages_viewed": views.astype(float),
        "reviews": reviews.astype(float),
        "avg_order_value": spend / np.maximum(orders, 1),
        "recency_days": np.where(orders > 0, (1.0 - last_order) * window_days, NEVER_BOUGHT_DAYS),
        "tenure_days": (last - first) * span * window_days,
    }
    events = views + carts + orders + reviews
    shares = rng.multinomial(events, np.diff(customers.category_cdf, prepend=0.0, axis=1))
    for index, category in enumerate(CATEGORIES):
        columns[f"share_{category}"] = shares[:, index] / events
    return pd.DataFrame(columns)


def _first_and_last(sessions: np.ndarray, rng: np.random.Generator):
    """Min and max of `sessions` uniforms on [0, 1] (order statistics, no per-session draws)."""
    last = rng.random(sessions.size) ** (1.0 / sessions)
    below = np.maximum(sessions - 1, 1)
    first = np.where(sessions > 1, last * (1.0 - rng.random(sessions.size) ** (1.0 / below)), last)
    return first, last


def _browsing_seconds(median: np.ndarray, views: np.ndarray, rng: np.random.Generator):
    """Sum of `views` lognormal(log median, VIEW_SPREAD) durations, moment-matched lognormal."""
    s2 = VIEW_SPREAD**2
    mean = views * median * np.exp(s2 / 2)
    variance = views * median**2 * (np.exp(s2) - 1) * np.exp(s2)
    sigma2 = np.log1p(variance / mean**2)
    return np.exp(np.log(mean) - sigma2 / 2 + np.sqrt(sigma2) * rng.standard_normal(views.size))


def _spend(customers, personas, catalogue, item_cdf, orders, rng) -> np.ndarray:
    """Draw every order's item and quantity and total them per customer."""
    n = customers.persona.size
    owner = np.repeat(np.arange(n), orders)
    category = sample_from_rows(customers.category_cdf, owner, rng)
    rows = customers.persona[owner] * len(CATEGORIES) + category
    item = category * catalogue.per_category + sample_from_rows(item_cdf, rows, rng)
    extra = persona_table(personas, "quantity")[customers.persona[owner]] - 1
    amount = catalogue.price[item] * (1 + rng.poisson(extra))
    return np.bincount(owner, weights=amount, minlength=n)
