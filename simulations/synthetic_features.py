"""`--kind features`: per-customer feature rows drawn straight from the customer draws.

No event log is materialized, so federations of millions of customers fit in memory.
Counts follow the same laws as the event generator (views per session, Binomial carts and
purchases, Binomial reviews); the sum of page-view durations uses the Fenton-Wilkinson
lognormal approximation, and the last visit is the maximum of the session times.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fedseg.simulations.catalogue import Catalogue
from fedseg.simulations.customers import Customers
from fedseg.simulations.events import VIEW_SPREAD, WINDOW_SECONDS
from fedseg.simulations.personas import CATEGORIES, Persona, persona_table
from fedseg.simulations.sampling import sample_from_rows

SECONDS_PER_DAY = 86_400


def feature_table(
    customers: Customers,
    personas: tuple[Persona, ...],
    catalogue: Catalogue,
    item_cdf: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per customer: user_id plus the default feature columns."""
    n = customers.persona.size
    per_session = persona_table(personas, "views_per_session")[customers.persona]
    views = customers.sessions + rng.poisson(customers.sessions * (per_session - 1))
    purchases = rng.binomial(views, customers.purchase_rate)
    browse_gap = (customers.cart_rate - customers.purchase_rate) / np.maximum(
        1 - customers.purchase_rate, 1e-12
    )
    carts = purchases + rng.binomial(views - purchases, np.clip(browse_gap, 0, 1))
    reviews = rng.binomial(purchases, persona_table(personas, "review_rate")[customers.persona])
    spend, purchase_shares = _purchases(customers, personas, catalogue, item_cdf, purchases, rng)
    last_visit = customers.start + (customers.end - customers.start) * rng.random(n) ** (
        1.0 / customers.sessions
    )
    columns = {
        "user_id": np.arange(n),
        "browsing_time_s": _browsing_seconds(customers.view_seconds, views, rng),
        "pages_viewed": views.astype(float),
        "carts": carts.astype(float),
        "purchase_frequency": purchases.astype(float),
        "monetary_value": spend,
        "reviews": reviews.astype(float),
        "recency_days": (1.0 - last_visit) * WINDOW_SECONDS / SECONDS_PER_DAY,
    }
    for index, category in enumerate(CATEGORIES):
        columns[f"share_{category}"] = purchase_shares[:, index]
    return pd.DataFrame(columns)


def _browsing_seconds(median: np.ndarray, views: np.ndarray, rng: np.random.Generator):
    """Sum of `views` lognormal(log median, VIEW_SPREAD) durations, moment-matched lognormal."""
    s2 = VIEW_SPREAD**2
    mean = views * median * np.exp(s2 / 2)
    variance = views * median**2 * (np.exp(s2) - 1) * np.exp(s2)
    sigma2 = np.log1p(variance / mean**2)
    return np.exp(np.log(mean) - sigma2 / 2 + np.sqrt(sigma2) * rng.standard_normal(views.size))


def _purchases(customers, personas, catalogue, item_cdf, purchases, rng):
    """Draw every purchase's item and quantity: total spend and category shares of purchases."""
    n = customers.persona.size
    owner = np.repeat(np.arange(n), purchases)
    category = sample_from_rows(customers.category_cdf, owner, rng)
    rows = customers.persona[owner] * len(CATEGORIES) + category
    item = category * catalogue.per_category + sample_from_rows(item_cdf, rows, rng)
    extra = persona_table(personas, "quantity")[customers.persona[owner]] - 1
    amount = catalogue.price[item] * (1 + rng.poisson(extra))
    spend = np.bincount(owner, weights=amount, minlength=n)
    counts = np.zeros((n, len(CATEGORIES)))
    np.add.at(counts, (owner, category), 1.0)
    shares = counts / np.maximum(purchases, 1)[:, None]
    return spend, shares
