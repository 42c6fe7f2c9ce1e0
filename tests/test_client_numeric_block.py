"""Typed (Parquet) feature tables take the one-block numeric path: same rows, same errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fedseg.client.errors import DataError
from fedseg.client.loading import load_merchant_table
from fedseg.privacy.pseudonyms import Pseudonymizer


def _load(table: pd.DataFrame, path):
    table.to_parquet(path)
    return load_merchant_table(path, pseudonymizer=Pseudonymizer.for_simulation("m", 0))


def test_parquet_features_with_missing_and_infinite_values(tmp_path):
    table = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "x": [1.0, np.nan, 3.0, np.inf],
            "y": [1.0, 2.0, 3.0, 4.0],
        }
    )
    clean, report = _load(table, tmp_path / "m.parquet")
    assert clean["x"].tolist() == [1.0, 3.0] and clean["y"].tolist() == [1.0, 3.0]
    assert report.dropped == {"missing_value": 1, "bad_value": 1}


def test_a_column_with_no_finite_value_is_refused_by_name(tmp_path):
    table = pd.DataFrame({"user_id": ["a", "b"], "x": [np.inf, -np.inf], "y": [1.0, 2.0]})
    with pytest.raises(DataError, match="column 'x' has no valid values"):
        _load(table, tmp_path / "m.parquet")
