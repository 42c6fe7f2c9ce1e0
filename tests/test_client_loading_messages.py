"""No message of the loader carries a cell of the merchant's file.

Distinctive values are planted in every cell that a failing or dirty file can hold; every
error line, report summary and report dict is scanned for them (and for the pseudonyms of
the planted ids). Messages name the file, the row, the column and what is wrong.
"""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
from fedseg.client.loading import DataError, load_merchant_table
from fedseg.privacy.pseudonyms import Pseudonymizer

PSEUDO = Pseudonymizer.for_simulation("messages", 0)
MARK = "zq7"  # in every planted value, and in no message template
HEADER = ["user_id", "timestamp", "event", "item_id", "price", "quantity"]


def planted(column: str, n: int) -> list[str]:
    return [f"{MARK}-{column}-{i}@example.com" for i in range(n)]


def good_rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": planted("user", n),
            "timestamp": ["2024-01-02T03:04:05Z"] * n,
            "event": ["purchase"] * n,
            "item_id": planted("item", n),
            "price": ["10"] * n,
            "quantity": ["1"] * n,
        }
    )


def with_column(column: str, values: list[str]) -> pd.DataFrame:
    table = good_rows(len(values))
    table[column] = values
    return table


# Whole-table problems: one column holds only planted junk.
UNUSABLE = {
    "price of e-mail addresses": with_column("price", planted("price", 3)),
    "timestamps of junk": with_column("timestamp", planted("time", 3)),
    "unknown events only": with_column("event", planted("event", 3)),
    "features of text": pd.DataFrame({"user_id": planted("user", 3), "spend": planted("s", 3)}),
}
# Dirty rows in a usable table, refused by strict mode.
DIRTY = pd.concat(
    [
        good_rows(3),
        with_column("price", planted("price", 2)),
        with_column("event", planted("event", 2)),
        with_column("timestamp", planted("time", 2)),
        with_column("quantity", planted("qty", 2)),
    ],
    ignore_index=True,
)


def write(table: pd.DataFrame, tmp_path, fmt: str) -> str:
    if fmt == "csv":
        table.to_csv(tmp_path / "shop.csv", index=False)
        return str(tmp_path / "shop.csv")
    if fmt == "parquet":
        table.to_parquet(tmp_path / "shop.parquet")
        return str(tmp_path / "shop.parquet")
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        table.to_sql("events", connection, index=False)
    connection.close()
    return f"sqlite:///{tmp_path / 'shop.db'}?table=events"


def assert_no_cell(text: str, table: pd.DataFrame) -> None:
    assert MARK not in text, text
    for pseudonym in PSEUDO.pseudonymize(table["user_id"].astype(str)):
        assert pseudonym not in text, text


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sqlite"])
@pytest.mark.parametrize("case", list(UNUSABLE))
def test_whole_table_errors_name_file_column_and_row_but_no_cell(tmp_path, fmt, case):
    table = UNUSABLE[case]
    source = write(table, tmp_path, fmt)
    with pytest.raises(DataError) as error:
        load_merchant_table(source, pseudonymizer=PSEUDO)
    message = str(error.value)
    assert message.startswith(f"{source}: column '") and "(first at row 1)" in message
    assert_no_cell(message, table)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sqlite"])
def test_strict_mode_and_reports_of_dirty_tables_carry_no_cell(tmp_path, fmt):
    source = write(DIRTY, tmp_path, fmt)
    clean, report = load_merchant_table(source, pseudonymizer=PSEUDO)
    assert report.dropped == {"bad timestamp": 2, "unknown event": 2, "bad price": 2,
                              "bad quantity": 2}  # fmt: skip
    assert_no_cell(report.summary(), DIRTY)
    assert_no_cell(json.dumps(report.to_dict()), DIRTY)
    with pytest.raises(DataError) as error:
        load_merchant_table(source, pseudonymizer=PSEUDO, strict=True)
    message = str(error.value)
    assert message.startswith(
        f"{source}: strict mode: 8 bad rows: 2 bad timestamp (first at row 8)"
    )
    assert_no_cell(message, DIRTY)


def test_an_unreadable_csv_row_is_named_by_number_not_content(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text(f"user_id,spend\na,1\n{MARK}-secret@example.com,2,3\nb,4\n")
    with pytest.raises(DataError) as error:
        load_merchant_table(path, pseudonymizer=PSEUDO)
    assert str(error.value) == f"{path}: unreadable CSV (row 2 has 3 fields, the header has 2)"


def test_no_valid_rows_lists_reasons_not_values(tmp_path):
    table = with_column("user_id", ["", "", f"{MARK}-user"]).assign(price=planted("price", 3))
    table.loc[0, "price"] = "-1"
    source = write(table, tmp_path, "csv")
    with pytest.raises(DataError) as error:
        load_merchant_table(source, pseudonymizer=PSEUDO)
    assert str(error.value) == f"{source}: no valid rows (2 missing user_id, 1 bad price)"
