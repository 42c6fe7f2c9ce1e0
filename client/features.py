"""Customer features: one row per customer, the operator's schema's columns in its order.

All of a customer's events collapse into one vector here, before any statistic leaves the
merchant, so the privacy unit downstream is one customer at one merchant. The schema
(privacy/protocol/schema.py, the operator's and public) names the features; a features
table must have exactly its columns, and an events table gets them from the formulas below.
Values are in the schema's units and *not* clipped: the release code clips (client/node.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.client.customer_events import CART, NS_PER_DAY, REVIEW, VIEW, CustomerEvents
from fedseg.client.errors import DataError
from fedseg.client.loading import LoadReport, load_merchant_table
from fedseg.privacy.protocol.builtin import SHARE_PREFIX, SPEND_SHARE_PREFIX, ecommerce_schema
from fedseg.privacy.protocol.schema import Feature, FeatureSchema, SchemaError
from fedseg.privacy.pseudonyms import Pseudonymizer


def _days(ns: np.ndarray) -> np.ndarray:
    return ns / NS_PER_DAY


def _avg_order_value(log: CustomerEvents) -> np.ndarray:
    return np.divide(log.spend, log.orders, out=np.zeros(log.n_users), where=log.orders > 0)


def _recency_days(log: CustomerEvents) -> np.ndarray:
    """NaN (later: the public upper bound) for customers who never bought."""
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
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, user, day)
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


def _rating_moments(log: CustomerEvents) -> tuple[np.ndarray, np.ndarray]:
    """Mean (NaN without a rating) and standard deviation (0) of the ratings given."""
    if "rating" not in log.frame.columns:
        raise ValueError("rating features need a 'rating' column in the events")
    values = pd.to_numeric(log.frame["rating"], errors="coerce").to_numpy(dtype=np.float64)
    rated = np.isfinite(values)
    n = np.bincount(log.user[rated], minlength=log.n_users)
    total = np.bincount(log.user[rated], weights=values[rated], minlength=log.n_users)
    square = np.bincount(log.user[rated], weights=values[rated] ** 2, minlength=log.n_users)
    mean = np.divide(total, n, out=np.full(log.n_users, np.nan), where=n > 0)
    var = np.divide(square, n, out=np.zeros(log.n_users), where=n > 0) - np.nan_to_num(mean) ** 2
    return mean, np.sqrt(np.maximum(var, 0.0))


def _active_days(log: CustomerEvents) -> np.ndarray:
    day = log.time // NS_PER_DAY
    order = np.lexsort((day, log.user))
    user, day = log.user[order], day[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (day[1:] != day[:-1])
    return np.bincount(user[new], minlength=log.n_users).astype(np.float64)


_LIFETIME_NAMES = ("purchase_days", "purchase_span_days", "customer_age_days", "repeat_day_spend")

# Every feature an events table can give; NaN means "undefined for this customer" (see
# ``_undefined_value``). ``share_<c>`` and ``spend_share_<c>`` are built in ``_share_columns``.
FORMULAS: dict[str, Callable[[CustomerEvents], np.ndarray]] = {
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
    "mean_rating": lambda log: _rating_moments(log)[0],
    "rating_spread": lambda log: _rating_moments(log)[1],
    "active_days": _active_days,
}


def _undefined_value(feature: Feature) -> float:
    """What a customer gets where a feature is undefined for them: a rating's midpoint (no
    opinion), else the public upper bound (the recency of one who never bought), else the
    lower bound, else 0. Public, so it depends on no other customer."""
    if feature.name == "mean_rating" and feature.bounded:
        return (feature.lower + feature.upper) / 2
    if feature.upper is not None:
        return float(feature.upper)
    return 0.0 if feature.lower is None else float(feature.lower)


def build_features(
    events: pd.DataFrame,
    *,
    features: FeatureSchema | Sequence[Feature] | None = None,
    as_of: object = None,
) -> pd.DataFrame:
    """One float64 row per customer (index ``user_id``), the ``features``' columns in order
    (default: the e-commerce schema, with shares if the events have categories).

    ``as_of`` (default: the latest event) anchors recency; events after it are an error. Rows
    follow the customers' first appearance in ``events``. ValueError naming the feature if
    one has no formula or needs a column the events lack."""
    if len(events) == 0:
        raise ValueError("no events to build features from")
    features = default_schema(events) if features is None else features
    wanted = tuple(features.features if isinstance(features, FeatureSchema) else features)
    log = CustomerEvents(events, as_of=as_of)
    columns = _share_columns(log, wanted)
    if any(f.name in _LIFETIME_NAMES for f in wanted):
        columns.update(_purchase_day_stats(log))
    for feature in wanted:
        if feature.name not in columns:
            if feature.name not in FORMULAS:
                raise ValueError(
                    f"feature {feature.name!r} has no formula for events tables (known: "
                    f"{', '.join(sorted(FORMULAS))}, {SHARE_PREFIX}<category>, "
                    f"{SPEND_SHARE_PREFIX}<category>); give a features table instead"
                )
            columns[feature.name] = FORMULAS[feature.name](log)
        values = np.asarray(columns[feature.name], dtype=np.float64)
        columns[feature.name] = np.where(np.isnan(values), _undefined_value(feature), values)
    index = pd.Index(log.users.astype("str"), name="user_id")
    table = pd.DataFrame({f.name: columns[f.name] for f in wanted}, index=index)
    if not np.isfinite(table.to_numpy()).all():
        raise ValueError("feature building produced non-finite values")  # a bug, not bad data
    return table


def _share_columns(log: CustomerEvents, wanted: Sequence[Feature]) -> dict[str, np.ndarray]:
    """All ``share_<c>``, ``spend_share_<c>`` and categorical ``category=<c>`` columns, one
    bincount per kind."""
    columns: dict[str, np.ndarray] = {}
    kinds = (
        (SPEND_SHARE_PREFIX, lambda: log.amount, lambda: log.spend),
        (SHARE_PREFIX, lambda: np.ones(len(log.user)), lambda: log.per_user_sum(None)),
        ("category=", lambda: np.ones(len(log.user)), lambda: log.per_user_sum(None)),
    )
    for prefix, weights, totals in kinds:
        names = [f.name for f in wanted if f.name.startswith(prefix) and f.name not in columns]
        if not names:
            continue
        categories = tuple(name.removeprefix(prefix) for name in names)
        sums = log.category_matrix(categories, weights())
        total = totals()[:, None]
        shares = np.divide(sums, total, out=np.zeros_like(sums), where=total > 0)
        columns.update(zip(names, shares.T, strict=True))
    return columns


def default_schema(events: pd.DataFrame | None = None) -> FeatureSchema:
    """The e-commerce schema, with category shares only if the events have categories."""
    if events is not None and "category" not in events.columns:
        return ecommerce_schema(())
    return ecommerce_schema()


def customer_features(
    source: str | Path | pd.DataFrame,
    *,
    pseudonymizer: Pseudonymizer,
    schema: FeatureSchema | None = None,
    as_of: object = None,
    source_name: str | None = None,
    strict: bool = False,
) -> tuple[pd.DataFrame, FeatureSchema, LoadReport]:
    """Load a merchant table of either kind; return (features in the schema's order, the
    schema, the load report). Without a schema: a features table's own columns (built-in
    names keep their definitions), an events table the e-commerce features.

    With the run's public ``as_of`` the loader keeps only the events inside the run's window
    (client/time_window.py), and recency is measured from ``as_of``. A table that does not
    fit the schema is one DataError naming the file and the column."""
    from fedseg.privacy.protocol.builtin import numeric_table_schema

    clean, report = load_merchant_table(
        source, pseudonymizer=pseudonymizer, source_name=source_name, as_of=as_of,
        strict=strict, user_index=True,
    )  # fmt: skip
    if report.kind == "events":
        if clean.empty:
            raise DataError(f"{report.source}: no events in the run's window ({report.window})")
        schema = schema or default_schema(clean)
        try:
            return build_features(clean, features=schema, as_of=as_of), schema, report
        except ValueError as exc:
            raise DataError(f"{report.source}: {exc}") from None
    table = clean  # indexed by user_id
    columns = table.columns.tolist()  # one pass: iterating an Arrow-backed Index is slow
    schema = schema or numeric_table_schema([str(c) for c in columns])
    try:
        schema.check_columns(columns, source=report.source)
    except SchemaError as exc:
        raise DataError(str(exc)) from None
    names = list(schema.names)
    ordered = table if columns == names else table[names]  # usually already so
    ordered = ordered.astype(np.float64)
    try:
        schema.check_values(ordered.to_numpy(), source=report.source)
    except SchemaError as exc:
        raise DataError(str(exc)) from None
    return ordered, schema, report
