"""Expand customers into a realistic event log: sessions of product views, carts,
purchases and reviews, all vectorized over every customer at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
from fedseg.simulations.data.catalogue import Catalogue
from fedseg.simulations.data.customers import Customers
from fedseg.simulations.data.personas import CATEGORIES, Persona, persona_table
from fedseg.simulations.data.sampling import sample_from_rows

WINDOW_START = np.datetime64("2024-01-01T00:00:00", "s")
WINDOW_SECONDS = 366 * 86_400  # observation window: calendar year 2024
AS_OF = WINDOW_START + np.timedelta64(WINDOW_SECONDS, "s")
EVENT_TYPES = ("view", "cart", "purchase", "review")
VIEW_SPREAD = 0.5  # lognormal sigma of one page view's duration around the customer's median
CHECKOUT_SECONDS = 45
REVIEW_DELAY_DAYS = (1, 14)


def draw_views(
    customers: Customers,
    personas: tuple[Persona, ...],
    catalogue: Catalogue,
    item_cdf: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per product view: customer (index), seconds into the window, item, duration."""
    n = customers.persona.size
    session_owner = np.repeat(np.arange(n), customers.sessions)
    span = customers.end - customers.start
    session_start = customers.start[session_owner] + span[session_owner] * rng.random(
        session_owner.size
    )
    per_session = persona_table(personas, "views_per_session")[customers.persona[session_owner]]
    n_views = 1 + rng.poisson(per_session - 1)
    owner = np.repeat(session_owner, n_views)
    duration = customers.view_seconds[owner] * rng.lognormal(0, VIEW_SPREAD, owner.size)
    # Views follow one another inside a session: offset = durations of the earlier views.
    ends = np.cumsum(duration)
    first_view = np.repeat(np.cumsum(n_views) - n_views, n_views)
    offset = ends - duration - (ends[first_view] - duration[first_view])
    seconds = np.repeat(session_start, n_views) * WINDOW_SECONDS + offset
    category = sample_from_rows(customers.category_cdf, owner, rng)
    column = sample_from_rows(item_cdf, customers.persona[owner] * len(CATEGORIES) + category, rng)
    return pd.DataFrame(
        {
            "owner": owner,
            "seconds": np.minimum(seconds, WINDOW_SECONDS - 1),
            "item": category * catalogue.per_category + column,
            "duration_s": np.round(duration, 1),
        }
    )


def expand_events(
    views: pd.DataFrame,
    customers: Customers,
    personas: tuple[Persona, ...],
    rng: np.random.Generator,
) -> dict[str, pd.DataFrame]:
    """Carts, purchases and reviews following the views, by event type (same columns)."""
    owner = views["owner"].to_numpy()
    persona = customers.persona[owner]
    u = rng.random(owner.size)
    carted = views[u < customers.cart_rate[owner]]
    bought_mask = u < customers.purchase_rate[owner]
    bought = views[bought_mask]
    extra_units = persona_table(personas, "quantity")[persona[bought_mask]] - 1
    reviewed_mask = (
        rng.random(len(bought)) < persona_table(personas, "review_rate")[persona][bought_mask]
    )
    reviewed = bought[reviewed_mask]
    rating = rng.normal(persona_table(personas, "mean_rating")[persona][bought_mask], 0.8)
    delay = rng.uniform(*REVIEW_DELAY_DAYS, len(reviewed)) * 86_400
    after_view = views["seconds"] + views["duration_s"]
    return {
        "view": views.assign(quantity=np.nan, rating=np.nan),
        "cart": carted.assign(
            seconds=after_view[carted.index], duration_s=np.nan, quantity=np.nan, rating=np.nan
        ),
        "purchase": bought.assign(
            seconds=after_view[bought.index] + CHECKOUT_SECONDS,
            duration_s=np.nan,
            quantity=(1 + rng.poisson(extra_units)).astype(float),
            rating=np.nan,
        ),
        "review": reviewed.assign(
            seconds=np.minimum(after_view[reviewed.index] + delay, WINDOW_SECONDS - 1),
            duration_s=np.nan,
            quantity=np.nan,
            rating=np.clip(np.round(rating[reviewed_mask]), 1, 5),
        ),
    }


def event_log(events: dict[str, pd.DataFrame], catalogue: Catalogue) -> pd.DataFrame:
    """Assemble the CONTRACT events table (plus a fake `email`), sorted by customer and time.

    `user_id` is the customer's index in the federation, unique across merchants. Built from
    numpy arrays and categorical codes: tens of millions of rows take seconds, not minutes.
    """
    parts = list(events.items())
    column = {
        name: np.concatenate([frame[name].to_numpy() for _, frame in parts])
        for name in ("owner", "seconds", "item", "duration_s", "quantity", "rating")
    }
    kind = np.concatenate([np.full(len(f), EVENT_TYPES.index(e), np.int8) for e, f in parts])
    # Clamp to the window so every event falls before AS_OF (the features' anchor).
    seconds = np.minimum(np.round(column["seconds"]), WINDOW_SECONDS - 1).astype(np.int64)
    # One stable sort on (customer, second) packed into an int64: far faster than lexsort.
    order = np.argsort(column["owner"].astype(np.int64) * WINDOW_SECONDS + seconds, kind="stable")
    owner, item, seconds = column["owner"][order], column["item"][order], seconds[order]
    n_customers = int(owner.max()) + 1 if owner.size else 0
    emails = [f"customer{i}@example.com" for i in range(n_customers)]
    categories = catalogue.items["category"]
    return pd.DataFrame(
        {
            "user_id": owner,
            "timestamp": WINDOW_START + seconds.astype("timedelta64[s]"),
            "event": pd.Categorical.from_codes(kind[order], categories=list(EVENT_TYPES)),
            "item_id": item,
            "price": catalogue.price[item],
            "category": pd.Categorical.from_codes(
                categories.cat.codes.to_numpy()[item], categories=categories.cat.categories
            ),
            "quantity": column["quantity"][order],
            "duration_s": column["duration_s"][order],
            "rating": column["rating"][order],
            "email": pd.Categorical.from_codes(owner, categories=emails),
        }
    )
