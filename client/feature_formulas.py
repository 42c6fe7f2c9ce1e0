"""A merchant's features as the operator's schema defines them (``privacy/protocol/schema``).

Names the e-commerce builder knows (``client/features.py``: orders, spend, recency_days,
``share_<category>``, ...) are computed there; the rating-behaviour features MovieLens-like
data need are computed here. Values are in the schema's units and unclipped; the release
code clips to the public bounds. A feature table must have exactly the schema's columns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from fedseg.client.customer_events import NS_PER_DAY, CustomerEvents
from fedseg.client.feature_specs import FeatureSpec, feature_spec
from fedseg.client.features import build_features
from fedseg.client.loading import load_merchant_table
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.pseudonyms import Pseudonymizer


def _rating_moments(log: CustomerEvents) -> tuple[np.ndarray, np.ndarray]:
    rating = pd.to_numeric(log.frame.get("rating"), errors="coerce")
    if rating is None:
        return np.full(log.n_users, np.nan), np.full(log.n_users, np.nan)
    values = np.asarray(rating, dtype=np.float64)
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


# Extra formulas; NaN (no rating at all) becomes the schema's midpoint / zero below.
EXTRA_FORMULAS: dict[str, Callable[[CustomerEvents], np.ndarray]] = {
    "mean_rating": lambda log: _rating_moments(log)[0],
    "rating_spread": lambda log: _rating_moments(log)[1],
    "active_days": _active_days,
}


def merchant_features(
    table: pd.DataFrame,
    schema: FeatureSchema,
    *,
    pseudonymizer: Pseudonymizer,
    as_of: object = None,
    source: str = "<table>",
) -> pd.DataFrame:
    """One row per customer (index: pseudonym), the schema's columns in its order."""
    clean, report = load_merchant_table(table, pseudonymizer=pseudonymizer, source_name=source)
    if report.kind == "features":
        frame = clean.set_index("user_id")
        schema.check_columns(list(frame.columns), source=report.source)
        return frame[list(schema.names)].astype(np.float64)
    builtin = [n for n in schema.names if n not in EXTRA_FORMULAS]
    specs = [_spec(n) for n in builtin]
    frame = build_features(clean, specs=specs, as_of=as_of) if specs else None
    extra = [n for n in schema.names if n in EXTRA_FORMULAS]
    if extra:
        log = CustomerEvents(clean, as_of=as_of)
        index = pd.Index(log.users.astype("str"), name="user_id")
        columns = {}
        for name in extra:
            values = EXTRA_FORMULAS[name](log)
            feature = schema.feature(name)
            fill = 0.0 if feature.lower is None else float(feature.lower)
            if name == "mean_rating" and feature.bounded:
                fill = (feature.lower + feature.upper) / 2
            columns[name] = np.where(np.isfinite(values), values, fill)
        extra_frame = pd.DataFrame(columns, index=index)
        frame = extra_frame if frame is None else frame.join(extra_frame)
    return frame[list(schema.names)]


def _spec(name: str) -> FeatureSpec:
    """The e-commerce builder's spec for a name (bounds there only fill "never bought")."""
    return feature_spec(name)
