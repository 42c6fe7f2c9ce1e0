"""Rows that used to crash a merchant or slip through: each now costs one counted row."""

import sqlite3

import numpy as np
import pandas as pd
import pytest
from fedseg.client.features import build_features
from fedseg.client.loading import DataError, load_merchant_table
from fedseg.client.validation import LARGEST_SUMMABLE
from fedseg.privacy.pseudonyms import Pseudonymizer

PSEUDO = Pseudonymizer.for_simulation("rules", 0)
HEADER = "user_id,timestamp,event,item_id,price,quantity,duration_s"
GOOD = [
    "u1,2024-01-01T10:00:00Z,view,i1,10,,30",
    "u1,2024-01-01T10:05:00Z,purchase,i1,10,2,",
    "u2,2024-03-01T09:00:00Z,purchase,i2,5,1,",
    "u3,2024-06-01T09:00:00Z,purchase,i2,5,1,",
]
AS_OF = "2025-01-01"


def load_csv(tmp_path, rows, header=HEADER, **options):
    path = tmp_path / "shop.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return load_merchant_table(path, pseudonymizer=PSEUDO, **options)


@pytest.mark.parametrize(
    ("reason", "bad_row"),
    [
        ("amount overflows", "u4,2024-02-01T00:00:00Z,purchase,i3,1e308,2,"),  # inf amount
        ("amount overflows", "u4,2024-02-01T00:00:00Z,purchase,i3,1e200,1e200,"),
        ("amount overflows", "u4,2024-02-01T00:00:00Z,purchase,i3,1.7e308,1,"),  # sums would
        ("bad quantity", "u4,2024-02-01T00:00:00Z,purchase,i3,0,1e300,"),
        ("bad duration_s", "u4,2024-02-01T00:00:00Z,view,i3,1,,1e300"),
        ("after as_of", "u4,2200-01-01T00:00:00Z,purchase,i3,1,1,"),
        ("before floor", "u4,1900-01-01T00:00:00Z,purchase,i3,1,1,"),
        ("before floor", "u4,2004-12-31T23:59:59Z,view,i3,1,,"),  # as_of - 20 years
    ],
)
def test_one_bad_row_costs_that_row_and_features_stay_finite(tmp_path, reason, bad_row):
    clean, report = load_csv(tmp_path, [*GOOD, bad_row], as_of=AS_OF)
    assert report.dropped == {reason: 1} and report.first_rows == {reason: 5}
    features = build_features(clean, as_of=AS_OF)  # nothing downstream fails on a kept row
    assert np.isfinite(features.to_numpy()).all() and len(features) == 3


def test_a_value_just_below_the_bound_is_kept_and_sums_stay_finite(tmp_path):
    price = f"{LARGEST_SUMMABLE / 4:.6e}"
    rows = [*GOOD, *(f"u4,2024-02-0{d}T00:00:00Z,purchase,i3,{price},1," for d in range(1, 5))]
    clean, report = load_csv(tmp_path, rows)
    assert report.dropped == {}
    assert np.isfinite(build_features(clean).to_numpy()).all()


def test_one_event_in_2200_no_longer_moves_everyones_recency(tmp_path):
    clean, _ = load_csv(tmp_path, GOOD, as_of=AS_OF)
    reference = build_features(clean, as_of=AS_OF)["recency_days"]
    clean, report = load_csv(tmp_path, [*GOOD, "u9,2200-01-01T00:00:00Z,purchase,i3,1,1,"],
                             as_of=AS_OF)  # fmt: skip
    pd.testing.assert_series_equal(build_features(clean, as_of=AS_OF)["recency_days"], reference)
    assert report.window == "2005-01-01 to 2025-01-01 (UTC)"
    assert "  time window: 2005-01-01 to 2025-01-01 (UTC)" in report.summary()


def test_window_bounds_are_inclusive_and_floor_can_be_set(tmp_path):
    rows = [*GOOD, "u4,2025-01-01T00:00:00Z,view,i3,1,,", "u5,2023-12-31T23:59:59Z,view,i3,1,,"]
    clean, report = load_csv(tmp_path, rows, as_of=AS_OF, floor="2024-01-01")
    assert report.dropped == {"before floor": 1} and len(clean) == 5
    _, report = load_csv(tmp_path, rows, floor="2024-01-01")  # no as_of: only the floor
    assert report.dropped == {"before floor": 1} and report.window.endswith(
        "the latest event (UTC)"
    )
    with pytest.raises(ValueError, match="floor .* must be before as_of"):
        load_csv(tmp_path, rows, as_of="2020-01-01", floor="2024-01-01")
    with pytest.raises(ValueError, match="as_of must be a time"):
        load_csv(tmp_path, rows, as_of="soon")


def test_session_and_order_ids_with_gaps_cost_their_rows(tmp_path):
    header = f"{HEADER},session_id,order_id"
    rows = [f"{GOOD[0]},s1,", f"{GOOD[1]},s1,o1", f"{GOOD[2]},,o2", f"{GOOD[3]},s3,"]
    clean, report = load_csv(tmp_path, rows, header=header)
    assert report.dropped == {"missing session_id": 1, "missing order_id": 1}
    assert report.first_rows == {"missing session_id": 3, "missing order_id": 4}
    features = build_features(clean)
    assert np.isfinite(features.to_numpy()).all()


def test_event_aliases_are_read_and_reported(tmp_path):
    rows = [r.replace("purchase", "Order") for r in GOOD] + [
        "u4,2024-02-01T00:00:00Z,Add To Cart,i3,1,,"
    ]
    clean, report = load_csv(tmp_path, rows)
    assert report.dropped == {} and report.event_aliases == (
        "add to cart → cart",
        "order → purchase",
    )
    assert clean["event"].tolist() == ["view", "purchase", "purchase", "purchase", "cart"]
    assert "  event names read as: add to cart → cart, order → purchase" in report.summary()


def test_strict_mode_refuses_unknown_events_with_one_line_and_no_value(tmp_path):
    rows = [
        *GOOD,
        "u4,2024-02-01T00:00:00Z,refund,i3,1,1,",
        "u5,2024-02-01T00:00:00Z,refund,i3,1,1,",
    ]
    _, report = load_csv(tmp_path, rows)
    assert report.dropped == {"unknown event": 2}
    assert "strict mode refuses a table with other names" in report.summary()
    with pytest.raises(DataError) as error:
        load_csv(tmp_path, rows, strict=True)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'shop.csv'}: strict mode: 2 bad rows: ")
    assert (
        "2 unknown event (first at row 5)" in message and "view, cart, purchase, review" in message
    )
    assert "refund" not in message and "\n" not in message


def test_strict_mode_keeps_dropping_expected_rows(tmp_path):
    rows = [*GOOD, GOOD[0], "u4,2200-01-01T00:00:00Z,view,i3,1,,"]
    clean, report = load_csv(tmp_path, rows, as_of=AS_OF, strict=True)
    assert report.dropped == {"after as_of": 1, "duplicate row": 1} and len(clean) == 4
    with pytest.raises(
        DataError, match=r"strict mode: 1 bad rows: 1 negative price \(first at row 5\)$"
    ):
        load_csv(tmp_path, [*GOOD, "u4,2024-02-01T00:00:00Z,purchase,i3,-1,1,"], strict=True)


def test_undecodable_bytes_cost_their_rows_in_parquet_sqlite_and_csv(tmp_path):
    table = pd.read_csv(pd.io.common.StringIO("\n".join([HEADER, *GOOD])), dtype=str)
    table["item_id"] = [b"i1", b"\xff\xfe", b"i2", b"i2"]
    table.to_parquet(tmp_path / "shop.parquet")
    _, report = load_merchant_table(tmp_path / "shop.parquet", pseudonymizer=PSEUDO)
    assert report.dropped == {"bad item_id": 1} and report.first_rows == {"bad item_id": 2}
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        table.to_sql("events", connection, index=False)
    connection.close()
    _, report = load_merchant_table(f"sqlite:///{tmp_path / 'shop.db'}?table=events",
                                    pseudonymizer=PSEUDO)  # fmt: skip
    assert report.dropped == {"bad item_id": 1}
    path = tmp_path / "latin1.csv"
    path.write_bytes(("\n".join([HEADER, *GOOD]) + "\n").encode().replace(b"u2", b"J\xe9r\xf4me"))
    clean, report = load_merchant_table(path, pseudonymizer=PSEUDO)
    assert report.dropped == {"bad user_id": 1} and len(clean) == 3


def test_text_that_csv_reads_as_missing_is_missing_in_every_format(tmp_path):
    rows = [*GOOD, "nan,2024-02-01T00:00:00Z,view,None,1,,"]
    from_csv, csv_report = load_csv(tmp_path, rows)
    table = pd.read_csv(tmp_path / "shop.csv", dtype=str, keep_default_na=False)
    table.to_parquet(tmp_path / "shop.parquet")  # the text "nan", not a null
    from_parquet, report = load_merchant_table(tmp_path / "shop.parquet", pseudonymizer=PSEUDO)
    assert report.dropped == csv_report.dropped == {"missing user_id": 1}
    pd.testing.assert_frame_equal(from_parquet, from_csv)


def test_a_parquet_bytes_column_costs_its_bad_rows_not_the_merchant(tmp_path):
    """Issue 15: a Parquet column of raw bytes gave a bare UnicodeDecodeError and lost the
    merchant; a value that is not UTF-8 text is now one bad row."""
    path = tmp_path / "shop.parquet"
    pd.DataFrame({
        "user_id": [b"\xff\xfe", b"u2", b"u3"], "timestamp": ["2024-01-01", "2024-01-02", "2024-01-03"],
        "event": ["purchase"] * 3, "item_id": [b"i1", b"i2", b"\xff"], "price": [1.0, 2.0, 3.0],
    }).to_parquet(path)  # fmt: skip
    clean, report = load_merchant_table(path, pseudonymizer=Pseudonymizer.for_simulation("s", 0))
    assert len(clean) == 1 and report.rows_read == 3
    assert sum(report.dropped.values()) == 2 and "bad user_id" in report.dropped
