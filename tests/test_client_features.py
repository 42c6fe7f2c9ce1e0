"""Customer features against hand-computed values for a small event log."""

import sqlite3

import numpy as np
import pandas as pd
import pytest
from fedseg.client.errors import DataError
from fedseg.client.features import build_features, customer_features
from fedseg.client.loading import load_merchant_table
from fedseg.privacy.protocol.builtin import ECOMMERCE_CATEGORIES as DEFAULT_CATEGORIES
from fedseg.privacy.protocol.builtin import ecommerce_schema, known_feature
from fedseg.privacy.protocol.schema import Feature, FeatureSchema
from fedseg.privacy.pseudonyms import Pseudonymizer

PSEUDO = Pseudonymizer(b"k" * 32)
COLUMNS = ["user_id", "timestamp", "event", "item_id", "price", "quantity", "duration_s"]
LOG = pd.DataFrame(
    [
        ("A", "2024-01-01T10:00:00Z", "view", "i1", 100.0, None, 120, "electronics"),
        ("A", "2024-01-01T10:10:00Z", "view", "i2", 50.0, None, 60, "fashion"),
        ("A", "2024-01-01T10:20:00Z", "purchase", "i1", 100.0, 2, None, "electronics"),
        ("A", "2024-01-01T10:20:00Z", "purchase", "i2", 50.0, 1, None, "fashion"),
        ("A", "2024-01-05T09:00:00Z", "purchase", "i3", 30.0, 1, None, "home"),
        ("A", "2024-01-06T12:00:00Z", "review", "i1", None, None, None, "electronics"),
        ("B", "2024-01-03T08:00:00Z", "view", "i3", 30.0, None, 300, "home"),
        ("B", "2024-01-03T08:30:00Z", "cart", "i3", 30.0, None, None, "home"),
        ("B", "2024-01-11T12:00:00Z", "view", "i4", 20.0, None, 30, "sports"),
        ("C", "2024-01-02T00:00:00Z", "purchase", "i5", 12.5, 4, None, "grocery"),
    ],
    columns=[*COLUMNS, "category"],
)
# Written out by hand from LOG; as_of = latest event = 2024-01-11 12:00.
EXPECTED = {
    #                    A                     B                C
    "browse_minutes": [(120 + 60) / 60, (300 + 30) / 60, 0.0],
    "orders": [2.0, 0.0, 1.0],  # A's two lines at 10:20 are one order
    "spend": [2 * 100 + 50 + 30, 0.0, 4 * 12.5],
    "pages_viewed": [2.0, 2.0, 0.0],
    "reviews": [1.0, 0.0, 0.0],
    "avg_order_value": [280 / 2, 0.0, 50.0],
    "recency_days": [6 + 3 / 24, 730.0, 9.5],  # B never bought: the public upper bound
    "tenure_days": [5 + 2 / 24, 8 + 4 / 24, 0.0],
    "share_electronics": [3 / 6, 0.0, 0.0],
    "share_fashion": [2 / 6, 0.0, 0.0],
    "share_home": [1 / 6, 2 / 3, 0.0],
    "share_beauty": [0.0, 0.0, 0.0],
    "share_grocery": [0.0, 0.0, 1.0],
    "share_sports": [0.0, 1 / 3, 0.0],
}


def features_of(log=LOG, **kwargs) -> pd.DataFrame:
    clean, _ = load_merchant_table(log, pseudonymizer=PSEUDO)
    return build_features(clean, **kwargs)


def test_default_features_match_hand_computed_values():
    features = features_of()
    assert list(features.columns) == list(EXPECTED)
    assert list(features.index) == PSEUDO.pseudonymize(["A", "B", "C"])
    assert features.index.name == "user_id"
    for name, values in EXPECTED.items():
        np.testing.assert_allclose(features[name], values, rtol=1e-12, err_msg=name)


def test_default_schema_order_and_categories():
    names = list(ecommerce_schema().names)
    assert names[:5] == ["browse_minutes", "orders", "spend", "pages_viewed", "reviews"]
    assert names[5:8] == ["avg_order_value", "recency_days", "tenure_days"]
    assert names[8:] == [f"share_{c}" for c in DEFAULT_CATEGORIES]
    assert ecommerce_schema(("Books",)).names[-1] == "share_books"
    with pytest.raises(ValueError, match="distinct"):
        ecommerce_schema(("home", "Home"))


def test_extra_features_on_request():
    names = ["sessions", "last_event_days", "purchases", "carts"]
    names += ["spend_share_electronics", "spend_share_home"]
    features = features_of(features=[known_feature(n) for n in names])
    # A: one visit on 01-01 (gaps of 10 min), one on 01-05, one on 01-06.
    # B: 08:00 and 08:30 are 30 min apart (not more): one visit, then 01-11.
    np.testing.assert_allclose(features["sessions"], [3, 2, 1])
    np.testing.assert_allclose(features["last_event_days"], [5.0, 0.0, 9.5])
    np.testing.assert_allclose(features["purchases"], [4, 0, 4])
    np.testing.assert_allclose(features["carts"], [0, 1, 0])
    np.testing.assert_allclose(features["spend_share_electronics"], [200 / 280, 0, 0])
    np.testing.assert_allclose(features["spend_share_home"], [30 / 280, 0, 0])


def test_order_id_and_session_id_columns_are_used_when_present():
    log = LOG.assign(
        order_id=["", "", "o1", "o2", "o3", "", "", "", "", "o4"],
        session_id=["s1", "s1", "s1", "s1", "s2", "s2", "s3", "s3", "s3", "s4"],
    )
    features = features_of(log, features=[known_feature("orders"), known_feature("sessions")])
    np.testing.assert_allclose(features["orders"], [3, 0, 1])
    np.testing.assert_allclose(features["sessions"], [2, 1, 1])


def test_as_of_moves_recency_and_must_not_precede_events():
    features = features_of(as_of="2024-01-21T12:00:00Z")
    np.testing.assert_allclose(features["recency_days"], [16 + 3 / 24, 730.0, 19.5])
    np.testing.assert_allclose(features["tenure_days"], EXPECTED["tenure_days"])
    with pytest.raises(ValueError, match="before the latest event"):
        features_of(as_of="2024-01-10")


def test_no_category_column_means_no_share_features():
    features = features_of(LOG.drop(columns="category"))
    assert list(features.columns) == list(EXPECTED)[:8]
    with pytest.raises(ValueError, match="category"):
        features_of(LOG.drop(columns="category"), features=ecommerce_schema())


def test_unknown_feature_name_is_refused_naming_it():
    with pytest.raises(ValueError, match="feature 'loyalty' has no formula"):
        features_of(features=[Feature("loyalty")])


def test_a_schema_the_events_cannot_give_is_one_line_naming_the_file(tmp_path):
    LOG.drop(columns="category").to_csv(tmp_path / "shop.csv", index=False)
    with pytest.raises(DataError, match=r"shop\.csv: .*'category' column"):
        customer_features(tmp_path / "shop.csv", pseudonymizer=PSEUDO, schema=ecommerce_schema())


def test_all_formats_give_the_same_features(tmp_path):
    LOG.to_csv(tmp_path / "shop.csv", index=False)
    typed = LOG.assign(timestamp=pd.to_datetime(LOG["timestamp"], utc=True))
    typed.to_parquet(tmp_path / "shop.parquet", index=False)
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        LOG.to_sql("events", connection, index=False)
    connection.close()
    sources = [tmp_path / "shop.csv", tmp_path / "shop.parquet"]
    sources.append(f"sqlite:///{tmp_path / 'shop.db'}?table=events")
    results = [customer_features(s, pseudonymizer=PSEUDO) for s in sources]
    for features, schema, report in results:
        pd.testing.assert_frame_equal(features, results[0][0])
        assert schema == ecommerce_schema() and report.kind == "events"
    np.testing.assert_allclose(results[0][0]["spend"], EXPECTED["spend"])


def test_features_table_known_and_undeclared_columns(tmp_path):
    table = pd.DataFrame(
        {"user_id": ["a", "b"], "spend": [10.0, 2.0], "loyalty_points": [3, 4], "phone": [1, 2]}
    )
    table.to_csv(tmp_path / "f.csv", index=False)
    features, schema, report = customer_features(tmp_path / "f.csv", pseudonymizer=PSEUDO)
    assert schema.names == ("spend", "loyalty_points")
    assert schema.features[0] == known_feature("spend")
    loyalty = schema.features[1]  # undeclared: both bounds found privately, not [-1e6, 1e6]
    assert (loyalty.lower, loyalty.upper, loyalty.log) == (None, None, False)
    assert report.dropped_columns == ("phone",)
    assert list(features.index) == PSEUDO.pseudonymize(["a", "b"])
    np.testing.assert_array_equal(features.to_numpy(), [[10.0, 3.0], [2.0, 4.0]])


def test_features_table_must_have_the_schemas_columns(tmp_path):
    table = pd.DataFrame({"user_id": ["a"], "spend": [1.0], "visits": [2.0]})
    table.to_csv(tmp_path / "f.csv", index=False)
    schema = FeatureSchema((known_feature("spend"), Feature("orders_total")), name="op")
    with pytest.raises(DataError, match=r"f\.csv: column 'orders_total' required"):
        customer_features(tmp_path / "f.csv", pseudonymizer=PSEUDO, schema=schema)
    ordered = FeatureSchema((Feature("visits"), known_feature("spend")))
    features, _, _ = customer_features(tmp_path / "f.csv", pseudonymizer=PSEUDO, schema=ordered)
    assert list(features.columns) == ["visits", "spend"]  # the schema's order


def test_never_bought_recency_is_the_schemas_upper_bound():
    recency = Feature("recency_days", "numeric", "days", 0.0, 90.0)
    features = features_of(features=[recency])
    np.testing.assert_allclose(features["recency_days"], [6 + 3 / 24, 90.0, 9.5])


def test_rating_features_and_their_undefined_values():
    rated = LOG.assign(rating=[None, None, None, None, None, 4.0, 2.0, None, 5.0, None])
    schema = [known_feature("mean_rating"), known_feature("rating_spread"),
              known_feature("active_days")]  # fmt: skip
    features = features_of(rated, features=schema)
    # A rated once (4); B rated 2 and 5; C never rated: the midpoint of [1, 5], spread 0.
    np.testing.assert_allclose(features["mean_rating"], [4.0, 3.5, 3.0])
    np.testing.assert_allclose(features["rating_spread"], [0.0, 1.5, 0.0])
    np.testing.assert_allclose(features["active_days"], [3, 2, 1])


def test_features_table_values_the_schema_cannot_take_name_the_column(tmp_path):
    # spend is clustered in log1p: a negative spend is a data error, not a silent zero
    pd.DataFrame({"user_id": ["a", "b"], "spend": [10.0, -2.0]}).to_csv(
        tmp_path / "f.csv", index=False
    )
    with pytest.raises(DataError, match=r"f\.csv: column 'spend' is log-scale but has negatives"):
        customer_features(tmp_path / "f.csv", pseudonymizer=PSEUDO)
