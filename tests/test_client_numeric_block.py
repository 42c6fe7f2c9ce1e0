"""Typed (Parquet) feature tables take the one-block numeric path: same rows, same errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fedseg.client.errors import DataError
from fedseg.client.loading import load_merchant_table
from fedseg.client.typed_tables import type_features
from fedseg.client.validation import check_features
from fedseg.privacy.pseudonyms import Pseudonymizer


def validate_features(table: pd.DataFrame, source: str):
    """The typed table's kept rows and drop counts, as loading computes them."""
    typed = type_features(table, source)
    checks = check_features(typed)
    return typed.frame.loc[checks.keep].reset_index(drop=True), checks.counts()


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
    assert report.dropped == {"missing value": 1, "bad value": 1}


def test_a_column_with_no_finite_value_is_refused_by_name(tmp_path):
    table = pd.DataFrame({"user_id": ["a", "b"], "x": [np.inf, -np.inf], "y": [1.0, 2.0]})
    with pytest.raises(DataError, match="column 'x' has no valid values"):
        _load(table, tmp_path / "m.parquet")


_CELLS = [0.0, -0.0, 1.5, 1.5, 2.0, np.nan, np.inf, -1.0]


def _random_table(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "user_id": rng.choice(["a", "b", "c", " d ", "7", ""], size=rows),
            "x": rng.choice(_CELLS, size=rows),
            "y": rng.choice(_CELLS[:5], size=rows),
            "n": pd.array(rng.choice([1, 2, None], size=rows), dtype="Int64"),
        }
    )
    return pd.concat([table, table.sample(frac=0.5, random_state=seed)], ignore_index=True)


@pytest.mark.parametrize("seed", range(40))
def test_numeric_block_drops_the_same_rows_as_the_text_path(seed):
    """Duplicates (-0.0 equal to 0.0), conflicts, gaps and infinities: the typed fast path
    and the column-by-column text path (pandas ``duplicated``) agree row for row."""
    typed = _random_table(seed, rows=int(np.random.default_rng(seed).integers(1, 30)))
    text = typed.astype(object)  # not plain numeric: the generic path
    try:
        expected = validate_features(text, "m")
    except DataError as exc:
        with pytest.raises(DataError, match=str(exc).split("(")[0]):
            validate_features(typed, "m")
        return
    clean, dropped = validate_features(typed, "m")
    assert dropped == expected[1]
    pd.testing.assert_frame_equal(clean, expected[0], check_exact=True)
