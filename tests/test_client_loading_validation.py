"""Each validation rule, broken by one row of a tiny file; drop counts per reason."""

import numpy as np
import pandas as pd
import pytest
from fedseg.client.loading import DataError, load_merchant_table
from fedseg.privacy.pseudonyms import Pseudonymizer

PSEUDO = Pseudonymizer.for_simulation("merchant-test", 0)
HEADER = "user_id,timestamp,event,item_id,price,quantity,duration_s,rating,category"
GOOD = [
    "u1,2024-01-01T10:00:00Z,view,i1,10,,30,,home",
    "u1,2024-01-01T10:05:00Z,purchase,i1,10,2,,,home",
    "u2,2024-01-02T09:00:00Z,review,i2,,,,5,fashion",
]
T = "2024-01-03T00:00:00Z"


def load_csv(tmp_path, rows, name="shop.csv", header=HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return load_merchant_table(path, pseudonymizer=PSEUDO)


@pytest.mark.parametrize(
    ("reason", "bad_row"),
    [
        ("missing user_id", f",{T},view,i3,1,,,,home"),
        ("missing user_id", f"  ,{T},view,i3,1,,,,home"),
        ("missing timestamp", "u3,,view,i3,1,,,,home"),
        ("bad timestamp", "u3,03/01/2024,view,i3,1,,,,home"),
        ("bad timestamp", "u3,2024-13-45T00:00:00Z,view,i3,1,,,,home"),
        ("missing event", f"u3,{T},,i3,1,,,,home"),
        ("unknown event", f"u3,{T},click,i3,1,,,,home"),
        ("missing item_id", f"u3,{T},view,,1,,,,home"),
        ("missing price", f"u3,{T},purchase,i3,,1,,,home"),
        ("missing price", f"u3,{T},cart,i3,,1,,,home"),
        ("bad price", f"u3,{T},purchase,i3,ten,1,,,home"),
        ("bad price", f"u3,{T},purchase,i3,inf,1,,,home"),
        ("negative price", f"u3,{T},purchase,i3,-1,1,,,home"),
        ("bad quantity", f"u3,{T},purchase,i3,1,two,,,home"),
        ("negative quantity", f"u3,{T},purchase,i3,1,-2,,,home"),
        ("bad duration_s", f"u3,{T},view,i3,1,,NaN-ish,,home"),
        ("negative duration_s", f"u3,{T},view,i3,1,,-5,,home"),
        ("bad rating", f"u3,{T},review,i3,,,,great,home"),
        ("negative rating", f"u3,{T},review,i3,,,,-1,home"),
        # identical to GOOD[1] once normalized (case, spaces, time-zone spelling)
        ("duplicate row", "u1 , 2024-01-01T10:05:00+00:00,Purchase ,i1,10.0,2,0,,HOME"),
    ],
)
def test_one_bad_row_is_dropped_and_counted(tmp_path, reason, bad_row):
    clean, report = load_csv(tmp_path, [*GOOD, bad_row])
    assert report.dropped == {reason: 1}
    assert (report.rows_read, report.rows_kept, len(clean)) == (4, 3, 3)


def test_view_and_review_may_omit_price(tmp_path):
    clean, report = load_csv(tmp_path, [*GOOD, f"u3,{T},view,i3,,,,,home"])
    assert report.dropped == {} and len(clean) == 4


def test_counts_per_reason_add_up_and_first_rule_wins(tmp_path):
    rows = [
        *GOOD,
        f",{T},purchase,i3,-1,1,,,home",  # missing user and negative price: charged once
        f"u3,{T},click,i3,1,,,,home",
        f"u3,{T},click,i4,1,,,,home",
        f"u4,{T},purchase,i3,1,-1,,,home",
        GOOD[0],
        GOOD[0],
    ]
    clean, report = load_csv(tmp_path, rows)
    assert report.dropped == {
        "missing user_id": 1,
        "unknown event": 2,
        "negative quantity": 1,
        "duplicate row": 2,
    }
    assert report.rows_kept == 3 == len(clean) and report.rows_read == 9
    assert "  dropped: 1 missing user_id (first at row 4), 2 unknown event (first at row 5)" in (
        report.summary()
    )


def test_unix_seconds_and_naive_times_are_utc(tmp_path):
    iso, _ = load_csv(tmp_path, GOOD, name="iso.csv")
    seconds = [row.replace("2024-01-01T10:00:00Z", "1704103200") for row in GOOD]
    seconds = [r.replace("2024-01-01T10:05:00Z", "1704103500") for r in seconds]
    seconds = [r.replace("2024-01-02T09:00:00Z", "1704186000") for r in seconds]
    unix, _ = load_csv(tmp_path, seconds, name="unix.csv")
    naive, _ = load_csv(tmp_path, [r.replace("Z,", ",") for r in GOOD], name="naive.csv")
    pd.testing.assert_series_equal(unix["timestamp"], iso["timestamp"])
    pd.testing.assert_series_equal(naive["timestamp"], iso["timestamp"])


@pytest.mark.parametrize(
    ("column", "rows", "shown"),
    [
        (
            "timestamp",
            ["u1,yesterday,view,i1,1,,,,home", "u2,last week,view,i1,1,,,,home"],
            "'yesterday'",
        ),
        ("event", [f"u1,{T},click,i1,1,,,,home", f"u2,{T},wishlist,i1,1,,,,home"], "'click'"),
        (
            "price",
            [f"u1,{T},purchase,i1,free,1,,,home", f"u2,{T},view,i1,gratis,,,,home"],
            "'free'",
        ),
    ],
)
def test_column_without_one_valid_value_is_an_error(tmp_path, column, rows, shown):
    message = rf"shop\.csv: column '{column}' has no valid values, expected .* \(first at row 1\)$"
    with pytest.raises(DataError, match=message) as error:
        load_csv(tmp_path, rows)
    assert shown.strip("'") not in str(error.value)


def test_empty_required_column_and_no_valid_rows(tmp_path):
    with pytest.raises(DataError, match=r"shop\.csv: column 'item_id' is empty"):
        load_csv(tmp_path, [f"u1,{T},view,,1,,,,home", f"u2,{T},view,,1,,,,home"])
    with pytest.raises(DataError, match=r"shop\.csv: no valid rows \(1 missing user_id, 1 nega"):
        load_csv(tmp_path, [f",{T},view,i1,1,,,,home", f"u2,{T},purchase,i1,-1,,,,home"])


def test_typed_parquet_is_validated_like_csv(tmp_path):
    text, _ = load_csv(tmp_path, [*GOOD, f"u3,{T},purchase,i3,-1,1,,,home", GOOD[0]])
    typed = pd.read_csv(tmp_path / "shop.csv")
    typed["timestamp"] = pd.to_datetime(typed["timestamp"], utc=True)
    typed.to_parquet(tmp_path / "shop.parquet")
    clean, report = load_merchant_table(tmp_path / "shop.parquet", pseudonymizer=PSEUDO)
    assert report.dropped == {"negative price": 1, "duplicate row": 1}
    pd.testing.assert_frame_equal(clean, text)


FEATURES_HEADER = "user_id,spend,orders"


@pytest.mark.parametrize(
    ("reason", "bad_row"),
    [
        ("missing user_id", ",5,1"),
        ("missing value", "c,,1"),
        ("bad value", "c,abc,1"),
        ("bad value", "c,inf,1"),
        ("bad value", "c,5,-inf"),
        ("duplicate row", "a,10,2"),
    ],
)
def test_features_rows_dropped_and_counted(tmp_path, reason, bad_row):
    clean, report = load_csv(tmp_path, ["a,10,2", "b,0.5,1", bad_row], header=FEATURES_HEADER)
    assert report.kind == "features" and report.dropped == {reason: 1}
    assert clean["spend"].tolist() == [10.0, 0.5]
    assert clean["spend"].dtype == np.float64 and clean["orders"].dtype == np.float64


def test_features_conflicting_user_rows_all_dropped(tmp_path):
    clean, report = load_csv(tmp_path, ["a,10,2", "b,0.5,1", "a,11,2"], header=FEATURES_HEADER)
    assert report.dropped == {"conflicting user_id": 2}
    assert clean["user_id"].tolist() == PSEUDO.pseudonymize(["b"])
