"""Customer features: one row per customer, from an events table or a features table.

All of a customer's events collapse into one vector here, before any statistic leaves
the merchant, so the privacy unit downstream is one customer at one merchant. Values are
in original units and *not* clipped: the specs' public bounds are applied by the code
that releases statistics (:meth:`FeatureSpec.clip`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.client.customer_events import (
    CART,
    NS_PER_DAY,
    REVIEW,
    VIEW,
    CustomerEvents,
)
from fedseg.client.errors import DataError
from fedseg.client.feature_specs import (
    DEFAULT_CATEGORIES,
    SHARE_PREFIX,
    SPEND_SHARE_PREFIX,
    FeatureSpec,
    default_feature_specs,
    feature_spec,
    generic_spec,
)
from fedseg.client.loading import LoadReport, load_merchant_table
from fedseg.privacy.pseudonyms import Pseudonymizer

__all__ = [
    "DEFAULT_CATEGORIES",
    "FeatureSpec",
    "build_features",
    "customer_features",
    "default_feature_specs",
    "feature_spec",
    "feature_specs_for_table",
]


def _days(ns: np.ndarray) -> np.ndarray:
    return ns / NS_PER_DAY


def _avg_order_value(log: CustomerEvents) -> np.ndarray:
    return np.divide(log.spend, log.orders, out=np.zeros(log.n_users), where=log.orders > 0)


def _recency_days(log: CustomerEvents) -> np.ndarray:
    """NaN (later: the spec's upper bound) for customers who never bought."""
    bought = log.last_purchase_time > np.iinfo(np.int64).min
    days = _days(log.as_of - np.where(bought, log.last_purchase_time, log.as_of))
    return np.where(bought, days, np.nan)


def _purchase_day_stats(log: CustomerEvents) -> dict[str, np.ndarray]:
    """Distinct purchase days, span first → last purchase day, age first purchase day → as_of
    (whole days, as ``lifetimes`` counts with ``freq="D"``) and the mean spend of the repeat
    purchase days (all but the first). NaN where a customer never bought."""
    user, day, spend = log.purchase_days
    n = log.n_users
    days = np.bincount(user, minlength=n).astype(np.float64)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, user, day)
    last = _group_max_days(user, day, n)
    bought = days > 0
    as_of_day = log.as_of // NS_PER_DAY
    total = np.bincount(user, weights=spend, minlength=n)
    first_spend = np.zeros(n)
    is_first = day == first[user]
    first_spend[user[is_first]] = spend[is_first]
    repeat = np.maximum(days - 1, 0)
    return {
        "purchase_days": days,
        "purchase_span_days": np.where(bought, last - np.where(bought, first, 0), np.nan),
        "customer_age_days": np.where(bought, as_of_day - np.where(bought, first, 0), np.nan),
        "repeat_day_spend": np.divide(
            total - first_spend, repeat, out=np.zeros(n), where=repeat > 0
        ),
    }


def _group_max_days(user: np.ndarray, day: np.ndarray, n: int) -> np.ndarray:
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, user, day)
    return last


_LIFETIME_NAMES = ("purchase_days", "purchase_span_days", "customer_age_days", "repeat_day_spend")

_FORMULAS: dict[str, Callable[[CustomerEvents], np.ndarray]] = {
    "browse_minutes": lambda log: (
        log.per_user_sum(np.where(log.event == VIEW, log.duration_s, 0)) / 60.0
    ),
    "orders": lambda log: log.orders,
    "spend": lambda log: log.spend,
    "pages_viewed": lambda log: log.count(VIEW),
    "reviews": lambda log: log.count(REVIEW),
    "avg_order_value": _avg_order_value,
    "recency_days": _recency_days,
    "tenure_days": lambda log: _days(log.last_time - log.first_time),
    "sessions": lambda log: log.sessions,
    "last_event_days": lambda log: _days(log.as_of - log.last_time),
    "purchases": lambda log: log.per_user_sum(np.where(log.is_purchase, log.quantity, 0)),
    "carts": lambda log: log.count(CART),
}


def build_features(
    events: pd.DataFrame,
    *,
    specs: Sequence[FeatureSpec] | None = None,
    as_of: object = None,
) -> pd.DataFrame:
    """One float64 row per customer (index ``user_id``), columns in the order of ``specs``.

    ``as_of`` (default: the latest event) anchors recency; events after it are an error.
    Default specs include ``share_<category>`` only if the events have a category column.
    Rows follow the customers' first appearance in ``events``."""
    if len(events) == 0:
        raise ValueError("no events to build features from")
    specs = tuple(specs) if specs is not None else _default_specs_for(events)
    log = CustomerEvents(events, as_of=as_of)
    columns = _share_columns(log, specs)
    if any(spec.name in _LIFETIME_NAMES for spec in specs):
        lifetime = _purchase_day_stats(log)
        for spec in (s for s in specs if s.name in _LIFETIME_NAMES):  # NaN: never bought
            columns[spec.name] = np.where(
                np.isnan(lifetime[spec.name]), spec.upper, lifetime[spec.name]
            )
    for spec in specs:
        if spec.name in columns:
            continue
        if spec.name not in _FORMULAS:
            raise ValueError(f"no formula for feature {spec.name!r}; known: {sorted(_FORMULAS)}")
        values = np.asarray(_FORMULAS[spec.name](log), dtype=np.float64)
        # NaN from a formula means "beyond any value seen": the public upper bound
        columns[spec.name] = np.where(np.isnan(values), spec.upper, values)
    index = pd.Index(log.users.astype("str"), name="user_id")
    table = pd.DataFrame({s.name: columns[s.name] for s in specs}, index=index)
    if not np.isfinite(table.to_numpy()).all():
        raise ValueError("feature building produced non-finite values")  # a bug, not bad data
    return table


def _default_specs_for(events: pd.DataFrame) -> tuple[FeatureSpec, ...]:
    return default_feature_specs(DEFAULT_CATEGORIES if "category" in events.columns else ())


def _share_columns(log: CustomerEvents, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    """All ``share_<c>`` and ``spend_share_<c>`` columns, one bincount per kind."""
    columns: dict[str, np.ndarray] = {}
    for prefix, weights, totals in (
        (SPEND_SHARE_PREFIX, lambda: log.amount, lambda: log.spend),
        (SHARE_PREFIX, lambda: np.ones(len(log.user)), lambda: log.per_user_sum(None)),
    ):
        wanted = [s.name for s in specs if s.name.startswith(prefix) and s.name not in columns]
        if not wanted:
            continue
        categories = tuple(name.removeprefix(prefix) for name in wanted)
        sums = log.category_matrix(categories, weights())
        total = totals()[:, None]
        shares = np.divide(sums, total, out=np.zeros_like(sums), where=total > 0)
        columns.update(zip(wanted, shares.T, strict=True))
    return columns


def feature_specs_for_table(features: pd.DataFrame) -> tuple[FeatureSpec, ...]:
    """Specs for a features table: the declared spec for known names, else a generic one."""
    names = [c for c in features.columns if c != "user_id"]
    specs = []
    for name in names:
        try:
            specs.append(feature_spec(str(name)))
        except KeyError:
            specs.append(generic_spec(str(name)))
    return tuple(specs)


def customer_features(
    source: str | Path | pd.DataFrame,
    *,
    pseudonymizer: Pseudonymizer,
    specs: Sequence[FeatureSpec] | None = None,
    as_of: object = None,
    source_name: str | None = None,
    strict: bool = False,
) -> tuple[pd.DataFrame, tuple[FeatureSpec, ...], LoadReport]:
    """Load a merchant table of either kind and return (features, specs, load report).

    With the run's public ``as_of`` the loader keeps only the events inside the run's window
    (client/time_window.py), and recency is measured from ``as_of``."""
    clean, report = load_merchant_table(
        source, pseudonymizer=pseudonymizer, source_name=source_name, as_of=as_of, strict=strict
    )
    if report.kind == "events":
        specs = tuple(specs) if specs is not None else _default_specs_for(clean)
        if clean.empty:
            raise DataError(f"{report.source}: no events in the run's window ({report.window})")
        return build_features(clean, specs=specs, as_of=as_of), specs, report
    table = clean.set_index("user_id")
    specs = tuple(specs) if specs is not None else feature_specs_for_table(table)
    absent = [s.name for s in specs if s.name not in table.columns]
    if absent:
        raise DataError(f"{report.source}: missing feature column {absent[0]!r}")
    names = [s.name for s in specs]
    ordered = table if list(table.columns) == names else table[names]  # usually already so
    return ordered.astype(np.float64), specs, report
