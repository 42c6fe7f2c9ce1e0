"""Built-in feature schemas: the e-commerce default, CDNOW's RFM and MovieLens behaviour.

The e-commerce schema carries exactly today's ``client/feature_specs.py`` bounds and units.
Every name is one the merchant-side feature builder computes (``client/features.py``
formulas, ``share_<category>``, and ``client/feature_formulas.py`` for the MovieLens ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fedseg.privacy.protocol.schema import Feature, FeatureSchema

ECOMMERCE_CATEGORIES = ("electronics", "fashion", "home", "beauty", "grocery", "sports")
# First listed genre of each MovieLens-100k film (the ``category`` of its review events).
MOVIELENS_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western", "unknown",
)  # fmt: skip


SHARE_PREFIX = "share_"  # share of a customer's interactions (events) in a category
SPEND_SHARE_PREFIX = "spend_share_"  # share of a customer's spend in a category

# Every feature a merchant's builder can compute from events (client/features.py), with the
# public bounds and units of the e-commerce default.
KNOWN_FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("browse_minutes", "numeric", "minutes", 0.0, 1_000.0, True, "", "time on viewed pages"),
        Feature("orders", "count", "orders", 0.0, 100.0, True, "", "distinct orders"),
        Feature("spend", "money", "currency", 0.0, 10_000.0, True, "", "sum of price × quantity"),
        Feature("pages_viewed", "count", "pages", 0.0, 2_000.0, True, "", "view events"),
        Feature("reviews", "count", "reviews", 0.0, 100.0, True, "", "review events"),
        Feature("avg_order_value", "money", "currency", 0.0, 2_000.0, True, "", "spend / orders"),
        Feature("recency_days", "numeric", "days", 0.0, 730.0, False, "",
                "last purchase to as_of; the upper bound if the customer never bought"),
        Feature("tenure_days", "numeric", "days", 0.0, 730.0, False, "", "first to last event"),
        Feature("sessions", "count", "sessions", 0.0, 500.0, True, "", "visits: session_id, else 30-min gaps"),
        Feature("last_event_days", "numeric", "days", 0.0, 730.0, False, "", "last event to as_of"),
        Feature("purchases", "count", "items", 0.0, 500.0, True, "", "purchased quantity"),
        Feature("carts", "count", "events", 0.0, 500.0, True, "", "add-to-cart events"),
        Feature("mean_rating", "numeric", "stars", 1.0, 5.0, False, "", "mean of the ratings given"),
        Feature("rating_spread", "numeric", "stars", 0.0, 2.0, False, "", "std of the ratings given"),
        Feature("active_days", "numeric", "days", 0.0, None, True, "", "distinct days with an event"),
        # The lifetime-value summaries (client/lifetime.py), in whole UTC days like `lifetimes`.
        Feature("purchase_days", "count", "days", 0.0, 1_000.0, True, "", "distinct purchase days"),
        Feature("purchase_span_days", "numeric", "days", 0.0, 7_300.0, False, "",
                "first to last purchase day (t_x); the upper bound if none"),
        Feature("customer_age_days", "numeric", "days", 0.0, 7_300.0, False, "",
                "first purchase day to as_of (T); the upper bound if none"),
        Feature("repeat_day_spend", "money", "currency", 0.0, 10_000.0, True, "",
                "mean spend of the purchase days after the first (0 without a repeat)"),
    )
}  # fmt: skip


def known_feature(name: str) -> Feature:
    """The built-in definition of a feature the merchants' builder computes (KeyError if
    none), including ``share_<category>`` and ``spend_share_<category>``."""
    if name in KNOWN_FEATURES:
        return KNOWN_FEATURES[name]
    for prefix, group, what in ((SPEND_SHARE_PREFIX, "spend_category", "spend"),
                                (SHARE_PREFIX, "category", "events")):  # fmt: skip
        if name.startswith(prefix):
            category = name.removeprefix(prefix)
            return Feature(name, "share", "fraction", 0.0, 1.0, False, group,
                           f"share of the customer's {what} in category {category!r}")  # fmt: skip
    raise KeyError(name)


def _shares(categories: Sequence[str], prefix: str = SHARE_PREFIX) -> tuple:
    return tuple(known_feature(f"{prefix}{c.strip().lower()}") for c in categories)


def ecommerce_schema(categories: Sequence[str] = ECOMMERCE_CATEGORIES) -> FeatureSchema:
    """The default features: the seed paper's five, order value, recency, tenure, shares."""
    names = [c.strip().lower() for c in categories]
    if len(set(names)) != len(names):
        raise ValueError(f"categories must be distinct, got {list(categories)}")
    base = ("browse_minutes", "orders", "spend", "pages_viewed", "reviews", "avg_order_value",
            "recency_days", "tenure_days")  # fmt: skip
    return FeatureSchema(tuple(KNOWN_FEATURES[n] for n in base) + _shares(names), name="ecommerce")


def cdnow_schema() -> FeatureSchema:
    """RFM for purchase-only data: recency, frequency, monetary, tenure, average order.

    Money and counts have a public lower bound 0 and an upper bound found privately; the
    day features are bounded by the public 730-day window before ``as_of``."""
    features = (
        Feature("recency_days", "numeric", "days", 0.0, 730.0, False, "", "last purchase to as_of"),
        Feature("orders", "count", "orders", 0.0, None, True, "", "frequency: distinct orders"),
        Feature("spend", "money", "USD", 0.0, None, True, "", "monetary: total spend"),
        Feature("tenure_days", "numeric", "days", 0.0, 730.0, False, "", "first to last purchase"),
        Feature("avg_order_value", "money", "USD", 0.0, None, True, "", "spend / orders"),
    )  # fmt: skip
    return FeatureSchema(features, name="cdnow")


def movielens_schema() -> FeatureSchema:
    """Activity, rating behaviour and genre shares (the first listed genre of each film)."""
    features = (
        Feature("reviews", "count", "ratings", 0.0, None, True, "", "activity: films rated"),
        Feature("active_days", "numeric", "days", 0.0, None, True, "", "distinct days with a rating"),
        Feature("mean_rating", "numeric", "stars", 1.0, 5.0, False, "", "mean of the ratings given"),
        Feature("rating_spread", "numeric", "stars", 0.0, 2.0, False, "", "std of the ratings given"),
        Feature("tenure_days", "numeric", "days", 0.0, 730.0, True, "", "first to last rating"),
    )  # fmt: skip
    genres = tuple(
        Feature(f"share_{g.lower()}", "share", "fraction", 0.0, 1.0, False, "genre",
                f"share of the customer's ratings in genre {g!r}")
        for g in MOVIELENS_GENRES
    )  # fmt: skip
    return FeatureSchema(features + genres, name="movielens")


def numeric_table_schema(names: Sequence[str], *, name: str = "table") -> FeatureSchema:
    """A features table's columns: a built-in feature keeps its definition, every other
    column is numeric with both bounds unknown (found privately)."""

    def feature(column: str) -> Feature:
        try:
            return known_feature(column)
        except KeyError:
            return Feature(column)

    return FeatureSchema(tuple(feature(str(n)) for n in names), name=name)


BUILTIN_SCHEMAS: dict[str, Callable[[], FeatureSchema]] = {
    "ecommerce": ecommerce_schema,
    "cdnow": cdnow_schema,
    "movielens": movielens_schema,
}
