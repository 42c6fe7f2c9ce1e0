"""Vectorized features agree with a plain per-customer Python computation on random logs."""

import numpy as np
import pandas as pd
from fedseg.client.features import build_features
from fedseg.privacy.protocol.builtin import ecommerce_schema, known_feature
from hypothesis import given, settings
from hypothesis import strategies as st

CATEGORIES = ("home", "books")
SPECS = ecommerce_schema(CATEGORIES).features + (known_feature("sessions"),)
START = pd.Timestamp("2024-01-01", tz="UTC")

event_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(0, 3 * 24 * 60),  # minutes after START: repeats and 30-min gaps happen
        st.sampled_from(["view", "cart", "purchase", "review"]),
        st.floats(0, 500, allow_nan=False).map(lambda p: round(p, 2)),
        st.integers(1, 3),
        st.floats(0, 900, allow_nan=False),
        st.sampled_from(["home", "books", "toys"]),
    ),
    min_size=1,
    max_size=40,
)


def naive_features(rows, as_of):
    """The definitions, one customer at a time."""
    out = {}
    for user in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == user]
        buys = [r for r in mine if r[2] == "purchase"]
        spend = sum(r[3] * r[4] for r in buys)
        orders = len({r[1] for r in buys})
        times = sorted(r[1] for r in mine)
        sessions = 1 + sum(1 for x, y in zip(times, times[1:], strict=False) if y - x > 30)
        row = {
            "browse_minutes": sum(r[5] for r in mine if r[2] == "view") / 60,
            "orders": orders,
            "spend": spend,
            "pages_viewed": sum(r[2] == "view" for r in mine),
            "reviews": sum(r[2] == "review" for r in mine),
            "avg_order_value": spend / orders if orders else 0.0,
            "recency_days": (as_of - max(r[1] for r in buys)) / 1440 if buys else 730.0,
            "tenure_days": (times[-1] - times[0]) / 1440,
            "sessions": sessions,
        }
        for c in CATEGORIES:
            row[f"share_{c}"] = sum(r[6] == c for r in mine) / len(mine)
        out[user] = row
    return pd.DataFrame.from_dict(out, orient="index")


@settings(max_examples=60, deadline=None)
@given(event_rows)
def test_vectorized_features_equal_naive_definitions(rows):
    events = pd.DataFrame(
        rows, columns=["user_id", "minute", "event", "price", "quantity", "duration_s", "category"]
    )
    events["timestamp"] = START + pd.to_timedelta(events.pop("minute"), unit="min")
    events["item_id"] = "i"
    as_of = max(r[1] for r in rows)
    features = build_features(events, features=SPECS)
    expected = naive_features(rows, as_of)[[s.name for s in SPECS]]
    assert list(features.index) == list(expected.index)
    np.testing.assert_allclose(features.to_numpy(), expected.to_numpy(float), rtol=1e-9, atol=1e-9)
