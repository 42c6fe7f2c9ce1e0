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


def _shares(categories: Sequence[str], group: str, prefix: str = "share_") -> tuple:
    return tuple(
        Feature(f"{prefix}{c.strip().lower()}", "share", "fraction", 0.0, 1.0, False, group,
                f"share of the customer's events in category {c!r}")
        for c in categories
    )  # fmt: skip


def ecommerce_schema(categories: Sequence[str] = ECOMMERCE_CATEGORIES) -> FeatureSchema:
    """Today's default features with their public bounds (client/feature_specs.py)."""
    base = (
        Feature("browse_minutes", "numeric", "minutes", 0.0, 1_000.0, True, "", "time on viewed pages"),
        Feature("orders", "count", "orders", 0.0, 100.0, True, "", "distinct orders"),
        Feature("spend", "money", "currency", 0.0, 10_000.0, True, "", "sum of price × quantity"),
        Feature("pages_viewed", "count", "pages", 0.0, 2_000.0, True, "", "view events"),
        Feature("reviews", "count", "reviews", 0.0, 100.0, True, "", "review events"),
        Feature("avg_order_value", "money", "currency", 0.0, 2_000.0, True, "", "spend / orders"),
        Feature("recency_days", "numeric", "days", 0.0, 730.0, False, "", "last purchase to as_of"),
        Feature("tenure_days", "numeric", "days", 0.0, 730.0, False, "", "first to last event"),
    )  # fmt: skip
    return FeatureSchema(base + _shares(categories, "category"), name="ecommerce")


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
    return FeatureSchema(features + _shares(MOVIELENS_GENRES, "genre"), name="movielens")


def numeric_table_schema(names: Sequence[str], *, name: str = "table") -> FeatureSchema:
    """Every column numeric with both bounds unknown (found privately)."""
    return FeatureSchema(tuple(Feature(str(n)) for n in names), name=name)


BUILTIN_SCHEMAS: dict[str, Callable[[], FeatureSchema]] = {
    "ecommerce": ecommerce_schema,
    "cdnow": cdnow_schema,
    "movielens": movielens_schema,
}
