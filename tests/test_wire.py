"""Raw array encoding: exact round trips, and refusal of anything but plain numbers."""

import numpy as np
import pytest
from fedseg.privacy.wire import from_raw, to_raw


@pytest.mark.parametrize("array", [np.arange(6.0).reshape(2, 3), np.array([1, -2], np.int64),
                                   np.zeros((0, 4)), np.array([True, False])])  # fmt: skip
def test_round_trip_is_exact_and_writable(array):
    back = from_raw(*to_raw(array))
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype and back.flags.writeable


@pytest.mark.parametrize(
    ("dtype", "shape", "data", "needle"),
    [
        ("<f8", (3,), b"\0" * 16, "do not hold"),
        ("|O", (1,), b"\0" * 8, "not numeric"),
        ("<U4", (1,), b"\0" * 16, "not numeric"),
        ("bogus", (1,), b"", "unknown dtype"),
        ("<f8", (-1,), b"", "do not hold"),
    ],
)
def test_malformed_arrays_are_refused(dtype, shape, data, needle):
    with pytest.raises(ValueError, match=needle):
        from_raw(dtype, shape, data)


def test_object_arrays_are_never_sent():
    with pytest.raises(TypeError):
        to_raw(np.array([object()]))
