"""Short cuts in the column parsers give what the general pandas route gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fedseg.client.parsing import parse_text


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "uint64"])
def test_integer_ids_parse_like_their_text(dtype):
    info = np.iinfo(dtype)
    column = pd.Series(
        np.array([info.min, info.max, 0, 7, 7], dtype=dtype), index=[3, 1, 2, 9, 4], name="uid"
    )
    parsed = parse_text(column)
    expected = column.astype("str").str.strip()
    pd.testing.assert_series_equal(parsed.values, expected, check_exact=True)
    assert not parsed.missing.any() and not parsed.bad.any()


def test_text_with_gaps_marks_them_missing_and_strips_the_rest():
    column = pd.Series([" a ", None, "", "b"], dtype="str")
    parsed = parse_text(column)
    assert parsed.missing.tolist() == [False, True, True, False]
    assert parsed.values.iloc[0] == "a" and parsed.values.iloc[3] == "b"
    assert parsed.values.isna().tolist() == [False, True, True, False]
