"""A typed features table (Parquet, numeric columns) loads through the float block: the
same clean table, report, pseudonyms and errors as the column-by-column path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fedseg.client.errors import DataError
from fedseg.client.features import customer_features
from fedseg.client.loading import load_merchant_table
from fedseg.privacy.pseudonyms import Pseudonymizer

PSEUDONYMIZER = Pseudonymizer.for_simulation("m", 0)
_CELLS = [0.0, -0.0, 1.5, 1.5, 2.0, 3.25, np.nan, np.inf, -np.inf, -1.0]


def _outcome(load, source, strict):
    """Everything a caller can observe: the frames (values, dtypes, index, columns), the
    report and the schema, or the error's type and message."""
    try:
        result = load(source, pseudonymizer=PSEUDONYMIZER, source_name="m.parquet", strict=strict)
    except DataError as exc:
        return ("error", str(exc))
    return result


def _assert_same(block, general):
    assert type(block) is type(general)
    if isinstance(general[0], str):  # ("error", message)
        assert block == general
        return
    for got, want in zip(block, general, strict=True):
        if isinstance(want, pd.DataFrame):
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            assert got.columns.dtype == want.columns.dtype and got.index.dtype == want.index.dtype
            assert got.index.name == want.index.name and got.columns.name == want.columns.name
        else:
            assert got == want


def _both_paths(table, tmp_path):
    """(block path: typed Parquet file, general path: the same table as object cells)."""
    path = tmp_path / "m.parquet"
    table.to_parquet(path, index=False)
    return path, table.astype(object)


def _random_table(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, 30))
    ids = [
        rng.integers(0, rows + 1, rows),  # int ids, some repeated
        rng.choice(["a", "b", " c ", "7", "", "NA"], rows),  # text ids, some missing
        np.arange(rows),  # one row per customer, the usual
    ][seed % 3]
    table = pd.DataFrame({"user_id": ids})
    for j in range(int(rng.integers(1, 4))):
        table[f"f{j}"] = rng.choice(_CELLS, rows) if rng.random() < 0.7 else rng.normal(size=rows)
    if seed % 4 == 0:
        table["n"] = rng.integers(-3, 9, rows)  # an int feature column
    if seed % 5 == 0:
        table["m"] = pd.array(rng.choice([1, 2, None], rows), dtype="Int64")
    if seed % 2 == 0:  # exact copies and conflicting rows
        table = pd.concat([table, table.sample(frac=0.5, random_state=seed)], ignore_index=True)
    return table


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("strict", [False, True])
def test_block_path_equals_the_general_path(seed, strict, tmp_path):
    path, cells = _both_paths(_random_table(seed), tmp_path)
    for load in (load_merchant_table, customer_features):
        _assert_same(_outcome(load, path, strict), _outcome(load, cells, strict))


@pytest.mark.parametrize(
    "table",
    [
        pd.DataFrame({"user_id": [7], "x": [1.5]}),  # one row
        pd.DataFrame({"x": [1.0, 2.0], "user_id": ["b", "a"], "y": [3, 4]}),  # ids not first
        pd.DataFrame({"user_id": [1, 2], "x": [1.0, 2.0], "flag": [True, False]}),  # bool
        pd.DataFrame({"user_id": [1, 2], "x": [1.0, 2.0], "email": ["a@b", "c@d"]}),
        pd.DataFrame({"User ID": [1, 2], "X": [1.0, 2.0]}),  # names normalized
        pd.DataFrame({"user_id": [1, 1], "x": [1.0, 1.0]}),  # duplicate vector
        pd.DataFrame({"user_id": [1, 1], "x": [1.0, 2.0]}),  # conflict: no valid rows
        pd.DataFrame({"user_id": [1, 2], "x": [np.nan, np.nan]}),  # empty column
        pd.DataFrame({"user_id": [1, 2], "x": [np.inf, -np.inf]}),  # no valid value
        pd.DataFrame({"user_id": [1, 2], "x": [-1.0, 2.0]}),  # negative
        pd.DataFrame({"user_id": [1, 2]}),  # only user_id
        pd.DataFrame({"customer": [1, 2], "x": [1.0, 2.0]}),  # no user_id
        pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "x": pd.Series([], dtype=float)}),
    ],
)
def test_edge_tables_load_the_same_both_ways(table, tmp_path):
    path, cells = _both_paths(table, tmp_path)
    for load in (load_merchant_table, customer_features):
        _assert_same(_outcome(load, path, False), _outcome(load, cells, False))


def test_kept_rows_values_report_and_pseudonyms_by_hand(tmp_path):
    table = pd.DataFrame(
        {
            "user_id": [10, 11, 11, 12, 13, 14, 14],
            "x": [1.0, 2.0, 2.0, np.nan, np.inf, 5.0, 6.0],
            "n": [1, 2, 2, 3, 4, 5, 6],
        }
    )
    path = tmp_path / "m.parquet"
    table.to_parquet(path, index=False)
    clean, report = load_merchant_table(path, pseudonymizer=PSEUDONYMIZER)
    assert clean.columns.tolist() == ["user_id", "x", "n"]
    assert clean.dtypes.tolist() == [pd.StringDtype(na_value=np.nan), np.float64, np.float64]
    assert clean["user_id"].tolist() == PSEUDONYMIZER.pseudonymize(["10", "11"])
    assert clean[["x", "n"]].to_numpy().tolist() == [[1.0, 1.0], [2.0, 2.0]]
    assert isinstance(clean.index, pd.RangeIndex)
    assert report.dropped == {
        "missing value": 1, "bad value": 1, "duplicate row": 1, "conflicting user_id": 2,
    }  # fmt: skip
    assert report.first_rows == {
        "missing value": 4, "bad value": 5, "duplicate row": 3, "conflicting user_id": 6,
    }  # fmt: skip
    assert (report.rows_read, report.rows_kept, report.n_users) == (7, 2, 2)
    features, _, _ = customer_features(path, pseudonymizer=PSEUDONYMIZER)
    assert features.index.name == "user_id" and features.index.tolist() == clean["user_id"].tolist()
    assert features.index.dtype == pd.StringDtype(na_value=np.nan)
    pd.testing.assert_frame_equal(features, clean.set_index("user_id"), check_exact=True)


def test_a_frame_with_a_named_column_index_is_renamed_as_before():
    table = pd.DataFrame({"user_id": [1, 2], "x": [1.0, 2.0]})
    table.columns.name = "fields"
    clean, _ = load_merchant_table(table, pseudonymizer=PSEUDONYMIZER)
    assert clean.columns.name is None
