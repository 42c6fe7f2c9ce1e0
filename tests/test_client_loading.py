"""Loading merchant tables: formats, unusable files, identifiers, pseudonyms, the report."""

import sqlite3

import numpy as np
import pandas as pd
import pytest
from fedseg.client.loading import DataError, LoadReport, load_merchant_table, read_table
from fedseg.privacy.pseudonyms import Pseudonymizer

KEY = b"merchant-secret-key-0123456789abcdef"
PSEUDO = Pseudonymizer(KEY)

EVENTS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2", "u3"],
        "timestamp": pd.to_datetime(
            ["2024-01-01 10:00", "2024-01-01 10:05", "2024-01-02 09:00", "2024-01-03 12:30"],
            utc=True,
        ),
        "event": ["view", "purchase", "view", "review"],
        "item_id": ["i1", "i1", "i2", "i2"],
        "price": [10.0, 10.0, 5.5, np.nan],
        "quantity": [np.nan, 2.0, np.nan, np.nan],
        "duration_s": [30.0, np.nan, 12.5, np.nan],
        "category": ["electronics", "electronics", "home", "home"],
        "rating": [np.nan, np.nan, np.nan, 4.0],
    }
)


def write(frame: pd.DataFrame, path, fmt: str) -> str:
    """Write ``frame`` in one of the three source formats and return the source string."""
    if fmt == "csv":
        frame.to_csv(path.with_suffix(".csv"), index=False)
        return str(path.with_suffix(".csv"))
    if fmt == "parquet":
        frame.to_parquet(path.with_suffix(".parquet"), index=False)
        return str(path.with_suffix(".parquet"))
    db = path.with_suffix(".db")
    with sqlite3.connect(db) as connection:
        frame.to_sql("events", connection, index=False)
    connection.close()
    return f"sqlite:///{db}?table=events"


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sqlite"])
def test_three_formats_give_the_same_clean_table(tmp_path, fmt):
    clean, report = load_merchant_table(write(EVENTS, tmp_path / "shop", fmt), pseudonymizer=PSEUDO)
    reference, _ = load_merchant_table(EVENTS, pseudonymizer=PSEUDO)
    pd.testing.assert_frame_equal(clean, reference)
    assert report.kind == "events" and report.rows_read == report.rows_kept == 4
    assert report.dropped == {} and report.n_users == 3


def test_clean_events_dtypes_and_defaults():
    clean, _ = load_merchant_table(EVENTS, pseudonymizer=PSEUDO)
    assert str(clean["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert list(clean["event"].cat.categories) == ["view", "cart", "purchase", "review"]
    assert clean["quantity"].tolist() == [1.0, 2.0, 1.0, 1.0]  # missing quantity means 1
    assert clean["duration_s"].tolist() == [30.0, 0.0, 12.5, 0.0]  # missing duration means 0
    assert clean["price"].dtype == np.float64 and np.isnan(clean["price"].iloc[3])


def test_user_id_becomes_keyed_pseudonym():
    clean, _ = load_merchant_table(EVENTS, pseudonymizer=PSEUDO)
    assert clean["user_id"].astype(str).tolist() == PSEUDO.pseudonymize(["u1", "u1", "u2", "u3"])
    other, _ = load_merchant_table(EVENTS, pseudonymizer=Pseudonymizer(KEY[::-1]))
    assert set(other["user_id"].astype(str)).isdisjoint(clean["user_id"].astype(str))


def test_direct_identifiers_dropped_and_reported(tmp_path):
    pii = EVENTS.assign(
        **{
            "Email": "alice@example.com",
            "phone_number": "+44 20 7946 0000",
            "First Name": "Alice",
            "last_name": "Liddell",
            "ip_address": "192.0.2.1",
            "street_address": "1 Rabbit Hole",
            "device": "ios",
        }
    )
    clean, report = load_merchant_table(write(pii, tmp_path / "pii", "csv"), pseudonymizer=PSEUDO)
    assert set(report.dropped_columns) == {
        "email",
        "phone_number",
        "first_name",
        "last_name",
        "ip_address",
        "street_address",
    }
    assert report.ignored_columns == ("device",)
    cells = set(clean.astype(str).to_numpy().ravel())
    assert not cells & {"alice@example.com", "+44 20 7946 0000", "Alice", "192.0.2.1", "ios"}
    assert "identifier columns removed: email, phone_number" in report.summary()


def test_features_table_loads_as_features(tmp_path):
    table = pd.DataFrame({"user_id": [1, 2], "spend": ["10.5", "3"], "email": ["a@x", "b@x"]})
    clean, report = load_merchant_table(table, pseudonymizer=PSEUDO, source_name="f.csv")
    assert report.kind == "features" and report.dropped_columns == ("email",)
    assert clean["user_id"].tolist() == PSEUDO.pseudonymize(["1", "2"])
    assert clean["spend"].tolist() == [10.5, 3.0]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sqlite"])
def test_missing_user_id_column_names_file_and_column(tmp_path, fmt):
    source = write(EVENTS.drop(columns="user_id"), tmp_path / "shop", fmt)
    with pytest.raises(
        DataError, match=r"shop\.(csv|parquet|db).*missing required column 'user_id'"
    ):
        load_merchant_table(source, pseudonymizer=PSEUDO)


def test_events_table_missing_required_column(tmp_path):
    source = write(EVENTS.drop(columns="item_id"), tmp_path / "shop", "csv")
    with pytest.raises(DataError, match=r"shop\.csv: missing required column 'item_id'"):
        load_merchant_table(source, pseudonymizer=PSEUDO)


def test_unreadable_and_empty_files(tmp_path):
    garbage = tmp_path / "broken.parquet"
    garbage.write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match=r"broken\.parquet: unreadable Parquet"):
        read_table(garbage)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: empty file"):
        read_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("user_id,timestamp,event,item_id,price\n")
    with pytest.raises(DataError, match=r"header\.csv: empty table \(no rows\)"):
        load_merchant_table(header_only, pseudonymizer=PSEUDO)
    with pytest.raises(DataError, match=r"missing\.csv: file not found"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"shop\.xlsx: unsupported file type"):
        (tmp_path / "shop.xlsx").write_text("x")
        read_table(tmp_path / "shop.xlsx")


def test_sqlite_errors_name_the_table(tmp_path):
    source = write(EVENTS, tmp_path / "shop", "sqlite")
    with pytest.raises(DataError, match=r"no table 'orders' \(tables: events\)"):
        read_table(source.replace("table=events", "table=orders"))
    with pytest.raises(DataError, match=r"needs \?table=NAME"):
        read_table(source.split("?")[0])
    with pytest.raises(DataError, match=r"nope\.db not found"):
        read_table(f"sqlite:///{tmp_path / 'nope.db'}?table=events")


def test_other_sql_urls_go_through_sqlalchemy(tmp_path):
    source = write(EVENTS, tmp_path / "shop", "sqlite")
    via_sqlalchemy = source.replace("sqlite:///", "sqlite+pysqlite:///")
    direct, _ = load_merchant_table(source, pseudonymizer=PSEUDO)
    through, _ = load_merchant_table(via_sqlalchemy, pseudonymizer=PSEUDO)
    pd.testing.assert_frame_equal(through, direct)
    with pytest.raises(DataError, match="orders"):
        read_table(via_sqlalchemy.replace("table=events", "table=orders"))


def test_wrong_kind_of_table_names_column(tmp_path):
    table = pd.DataFrame({"user_id": ["a", "b"], "segment": ["gold", "silver"]})
    source = write(table, tmp_path / "segments", "csv")
    with pytest.raises(
        DataError, match=r"segments\.csv: column 'segment' has no valid values, expected numbers"
    ) as error:
        load_merchant_table(source, pseudonymizer=PSEUDO)
    assert str(error.value).endswith("(first at row 1)") and "gold" not in str(error.value)


def test_load_report_summary_and_consistency():
    report = LoadReport(
        "s.csv", "events", 10, 7, {"unknown event": 1, "duplicate row": 2}, ("email",),
        n_users=4, first_rows={"unknown event": 3, "duplicate row": 5},
        window="2005-01-01 to 2025-01-01 (UTC)", event_aliases=("order → purchase",),
    )  # fmt: skip
    assert report.rows_dropped == 3
    assert report.summary().splitlines() == [
        "s.csv: events table, 10 rows read, 7 kept, 3 dropped, 4 customers",
        "  dropped: 1 unknown event (first at row 3), 2 duplicate row (first at row 5)",
        "  time window: 2005-01-01 to 2025-01-01 (UTC)",
        "  event names read as: order → purchase",
        "  identifier columns removed: email",
        "  events are view, cart, purchase, review or an alias (docs/merchant.md); "
        "strict mode refuses a table with other names",
    ]
    assert report.to_dict()["first_rows"] == {"unknown event": 3, "duplicate row": 5}
    with pytest.raises(ValueError, match="10 rows read"):
        LoadReport("s.csv", "events", 10, 8, {"duplicate row": 1})
    with pytest.raises(ValueError, match="kind"):
        LoadReport("s.csv", "orders", 1, 1)


def test_csv_row_with_too_many_fields_is_unreadable(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("user_id,spend\na,1\nb,2,3\n")  # a lenient parser would shift columns
    with pytest.raises(DataError, match=r"ragged\.csv: unreadable CSV .*3"):
        read_table(path)
