"""Raw array encoding: exact round trips, and refusal of anything but plain numbers."""

import numpy as np
import pytest
from fedseg.privacy.wire import from_raw, pack, to_raw, unpack


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


@pytest.mark.parametrize("array", [np.arange(6.0).reshape(2, 3), np.zeros((0, 4)),
                                   np.array([1, -2], np.int64), np.ones((2, 1, 3), np.uint8)])  # fmt: skip
def test_packed_arrays_round_trip_exactly(array):
    back = unpack(pack(array))
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype and back.shape == array.shape and back.flags.writeable


def test_a_packed_array_is_its_data_after_a_short_ascii_header():
    blob = pack(np.array([[1.0, 2.0]]))
    assert blob[:2] == len(b"<f8:1,2").to_bytes(2, "little")
    assert blob[2:9] == b"<f8:1,2" and blob[9:] == np.array([1.0, 2.0]).tobytes()


@pytest.mark.parametrize(
    ("blob", "needle"),
    [
        (b"", "not a packed array"),
        ("text", "not a packed array"),
        (b"\x05\x00<f8:1" + bytes(400_000), "do not hold"),  # a claimed float, 400 kB of data
        (b"\x05\x00<f8:1", "do not hold"),
        (b"\xff\x00<f8:1", "malformed"),  # the header runs past the end
        (b"\x04\x00<f81" + bytes(8), "malformed"),  # no colon
        (b"\x05\x00<f8:x" + bytes(8), "malformed"),
        (b"\x05\x00\xff\xfe8:1" + bytes(8), "malformed"),  # not ASCII
        (b"\x05\x00|O8:1" + bytes(8), "not numeric"),
        (b"\x06\x00<f8:-1", "do not hold"),
    ],
)
def test_anything_else_is_refused_when_unpacking(blob, needle):
    with pytest.raises(ValueError, match=needle):
        unpack(blob)


def test_equal_request_bytes_decode_to_independent_equal_arrays():
    from fedseg.privacy.protocol import records

    blob = pack(np.arange(6.0).reshape(2, 3))
    content = records.RecordDict({"arrays": records.ConfigRecord({"centres": blob}),
                                  "config": records.ConfigRecord({})})  # fmt: skip
    for _ in range(2):  # merchants writing into their copies (the first decoded, then remembered)
        records.from_records(content)["centres"][0, 0] = 99.0
    second = records.from_records(content)["centres"]
    np.testing.assert_array_equal(second, np.arange(6.0).reshape(2, 3))
    assert second.flags.writeable and second.dtype == np.float64 and second.shape == (2, 3)


def test_remembered_arrays_are_bounded_and_bad_bytes_refused_every_time():
    from fedseg.privacy.protocol import records

    for i in range(2 * records._RECENT_BLOBS):
        records._decoded(pack(np.array([float(i)])))
    assert len(records._recent) <= records._RECENT_BLOBS
    for _ in range(2):
        with pytest.raises(ValueError, match="packed array"):
            records._decoded(b"\x01")
