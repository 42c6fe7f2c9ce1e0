"""The declared customer features: names, units and *public* bounds.

Bounds are fixed here, never taken from the data: the federated statistics use them for
histogram bin edges and clipping, and any bound learned from one merchant's customers
would leak something about them. ``log=True`` marks heavy-tailed features (money, time,
counts): downstream code bins and standardizes them on ``log1p`` of the clipped value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "electronics",
    "fashion",
    "home",
    "beauty",
    "grocery",
    "sports",
)
SHARE_PREFIX = "share_"  # share of a customer's interactions (events) in a category
SPEND_SHARE_PREFIX = "spend_share_"  # share of a customer's spend in a category
_NAME = re.compile(r"^\S(.*\S)?$")  # any name without surrounding whitespace


@dataclass(frozen=True)
class FeatureSpec:
    """One customer feature with its unit and public clip range ``[lower, upper]``."""

    name: str
    unit: str
    lower: float
    upper: float
    log: bool
    description: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"feature name {self.name!r} must be non-empty, without surrounding spaces"
            )
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError(f"feature {self.name!r}: bounds must be finite")
        if not self.lower < self.upper:
            raise ValueError(f"feature {self.name!r}: lower {self.lower} >= upper {self.upper}")
        if self.log and self.lower < 0:
            raise ValueError(f"feature {self.name!r}: a log-scale feature needs lower >= 0")

    def clip(self, values: np.ndarray) -> np.ndarray:
        """Values clipped to the public range."""
        return np.clip(np.asarray(values, dtype=np.float64), self.lower, self.upper)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Clipped values on the scale bins and standardization use (``log1p`` if ``log``)."""
        clipped = self.clip(values)
        return np.log1p(clipped) if self.log else clipped


_BASE_SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("browse_minutes", "minutes", 0.0, 1_000.0, True, "time spent on viewed pages"),
    FeatureSpec("orders", "orders", 0.0, 100.0, True, "purchase frequency: distinct orders"),
    FeatureSpec("spend", "currency", 0.0, 10_000.0, True, "monetary value: sum of price*quantity"),
    FeatureSpec("pages_viewed", "pages", 0.0, 2_000.0, True, "number of view events"),
    FeatureSpec("reviews", "reviews", 0.0, 100.0, True, "number of review events"),
    FeatureSpec("avg_order_value", "currency", 0.0, 2_000.0, True, "spend / orders (0 if none)"),
    FeatureSpec(
        "recency_days", "days", 0.0, 730.0, False,
        "days from the last purchase to as_of; the upper bound if the customer never bought",
    ),
    FeatureSpec("tenure_days", "days", 0.0, 730.0, False, "days from first to last event"),
)  # fmt: skip
# Available on request (not in the default set).
_EXTRA_SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("sessions", "sessions", 0.0, 500.0, True, "visits: session_id, else 30-min gaps"),
    FeatureSpec("last_event_days", "days", 0.0, 730.0, False, "days from the last event to as_of"),
    FeatureSpec("purchases", "items", 0.0, 500.0, True, "purchased quantity (sum of quantity)"),
    FeatureSpec("carts", "events", 0.0, 500.0, True, "number of add-to-cart events"),
    # The lifetime-value summaries (client/lifetime.py), in whole UTC days like `lifetimes`.
    FeatureSpec("purchase_days", "days", 0.0, 1_000.0, True, "distinct days with a purchase"),
    FeatureSpec(
        "purchase_span_days", "days", 0.0, 7_300.0, False,
        "days from the first to the last purchase day (t_x); the upper bound if none",
    ),
    FeatureSpec(
        "customer_age_days", "days", 0.0, 7_300.0, False,
        "days from the first purchase day to as_of (T); the upper bound if none",
    ),
    FeatureSpec(
        "repeat_day_spend", "currency", 0.0, 10_000.0, True,
        "mean spend of the purchase days after the first (0 without a repeat)",
    ),
)  # fmt: skip
KNOWN_SPECS: dict[str, FeatureSpec] = {s.name: s for s in _BASE_SPECS + _EXTRA_SPECS}


def share_spec(category: str) -> FeatureSpec:
    """Share of a customer's events (of any kind) that fall in ``category``."""
    return FeatureSpec(
        f"{SHARE_PREFIX}{category}", "fraction", 0.0, 1.0, False,
        f"share of the customer's events in category {category!r}",
    )  # fmt: skip


def spend_share_spec(category: str) -> FeatureSpec:
    """Share of a customer's spend in ``category`` (0 for customers who spent nothing)."""
    return FeatureSpec(
        f"{SPEND_SHARE_PREFIX}{category}", "fraction", 0.0, 1.0, False,
        f"share of the customer's spend in category {category!r}",
    )  # fmt: skip


def default_feature_specs(
    categories: Sequence[str] = DEFAULT_CATEGORIES,
) -> tuple[FeatureSpec, ...]:
    """The five seed-paper features first, then order value, recency, tenure, shares."""
    names = [c.strip().lower() for c in categories]
    if len(set(names)) != len(names):
        raise ValueError(f"categories must be distinct, got {list(categories)}")
    return _BASE_SPECS + tuple(share_spec(c) for c in names)


def feature_spec(name: str) -> FeatureSpec:
    """The declared spec of a known feature name (including ``share_<c>``)."""
    if name in KNOWN_SPECS:
        return KNOWN_SPECS[name]
    if name.startswith(SPEND_SHARE_PREFIX):
        return spend_share_spec(name.removeprefix(SPEND_SHARE_PREFIX))
    if name.startswith(SHARE_PREFIX):
        return share_spec(name.removeprefix(SHARE_PREFIX))
    raise KeyError(name)


def generic_spec(name: str) -> FeatureSpec:
    """A wide, data-independent spec for a numeric column nobody declared.

    Bins this wide are coarse: a merchant who knows better should pass its own specs."""
    return FeatureSpec(
        name, "unknown", -1e6, 1e6, False,
        "undeclared numeric column: generic public range [-1e6, 1e6]",
    )  # fmt: skip
