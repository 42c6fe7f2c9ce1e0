"""The Parquet reader gives exactly what ``pd.read_parquet`` gives, for every kind of column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fedseg.client.tables import read_table


def _frames() -> dict[str, pd.DataFrame]:
    n = 7
    base = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "int_ids": np.arange(n, dtype=np.int64),
            "price": [1.5, np.nan, -0.0, np.inf, 2.0, 3.0, 4.0],
            "nullable": pd.array([1, None, 3, 4, 5, None, 7], dtype="Int64"),
            "flag": [True, False, True, True, False, False, True],
            "text_gaps": ["a", None, " b ", "", "c", "d", "e"],
            "stamp_utc": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "stamp_zone": pd.date_range("2024-03-30", periods=n, freq="6h", tz="Europe/Paris"),
            "stamp_naive": pd.date_range("2024-01-01", periods=n, freq="D"),
            "event": pd.Categorical(["view", "cart", "view", "purchase", "view", "review", "cart"]),
            "small": np.arange(n, dtype=np.int8),
        }
    )
    indexed = base.set_index("user_id")
    with_attrs = base.copy()
    with_attrs.attrs = {"source": "shop", "version": 2}
    return {
        "mixed": base,
        "indexed": indexed,
        "attrs": with_attrs,
        "empty": base.iloc[:0],
        "one_column": base[["user_id"]],
    }


@pytest.mark.parametrize("name", list(_frames()))
@pytest.mark.parametrize("index", [False, None])
def test_parquet_reads_like_pandas(tmp_path, name, index):
    frame = _frames()[name]
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path, index=index)
    ours, theirs = read_table(path), pd.read_parquet(path)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert list(ours.dtypes) == list(theirs.dtypes)
    assert ours.index.dtype == theirs.index.dtype
    assert ours.attrs == theirs.attrs
