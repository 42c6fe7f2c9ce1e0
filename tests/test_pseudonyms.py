"""Pseudonyms: keyed, deterministic, purpose-separated, never a plain hash."""

import hashlib
import hmac

import pytest
from fedseg.privacy.pseudonyms import (
    MIN_KEY_BYTES,
    Pseudonymizer,
    PseudonymKeyError,
    load_key_file,
    write_key_file,
)
from hypothesis import given
from hypothesis import strategies as st

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_known_value_matches_hmac_of_subkey():
    subkey = hmac.new(KEY_A, b"fedseg/pseudonym/v1/user_id", hashlib.sha256).digest()
    expected = hmac.new(subkey, b"alice", hashlib.sha256).hexdigest()
    assert Pseudonymizer(KEY_A).pseudonymize(["alice"]) == [expected]


def test_deterministic_per_key_and_order_preserving():
    ids = ["u1", "u2", "u1", "u3"]
    first = Pseudonymizer(KEY_A).pseudonymize(ids)
    assert first == Pseudonymizer(KEY_A).pseudonymize(ids)
    assert first[0] == first[2] and len(set(first)) == 3
    assert all(len(p) == 64 and int(p, 16) >= 0 for p in first)


def test_different_keys_and_purposes_give_unrelated_pseudonyms():
    ids = [f"u{i}" for i in range(100)]
    a = Pseudonymizer(KEY_A).pseudonymize(ids)
    b = Pseudonymizer(KEY_B).pseudonymize(ids)
    items = Pseudonymizer(KEY_A, purpose="item_id").pseudonymize(ids)
    assert set(a).isdisjoint(b)
    assert set(a).isdisjoint(items)


@given(st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=20))
def test_no_pseudonym_equals_plain_sha256(ids):
    pseudonyms = Pseudonymizer(KEY_A).pseudonymize(ids)
    plain = {hashlib.sha256(i.encode()).hexdigest() for i in ids}
    assert plain.isdisjoint(pseudonyms)


def test_short_key_refused():
    with pytest.raises(ValueError, match="31 bytes"):
        Pseudonymizer(b"k" * (MIN_KEY_BYTES - 1))
    Pseudonymizer(b"k" * MIN_KEY_BYTES)  # exactly the minimum is fine


def test_repr_hides_key():
    assert KEY_A.hex() not in repr(Pseudonymizer(KEY_A))


def test_simulation_key_deterministic_per_merchant_and_seed():
    ids = ["u1", "u2"]
    base = Pseudonymizer.for_simulation("m1", 0).pseudonymize(ids)
    assert base == Pseudonymizer.for_simulation("m1", 0).pseudonymize(ids)
    assert base != Pseudonymizer.for_simulation("m2", 0).pseudonymize(ids)
    assert base != Pseudonymizer.for_simulation("m1", 1).pseudonymize(ids)


def test_load_key_file_hex_and_raw(tmp_path):
    hex_file = tmp_path / "key.hex"
    hex_file.write_text(KEY_A.hex() + "\n")
    assert load_key_file(hex_file) == KEY_A
    raw_file = tmp_path / "key.bin"
    raw = bytes([0xFF]) * 40
    raw_file.write_bytes(raw)
    assert load_key_file(raw_file) == raw


def test_load_key_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.key"
    with pytest.raises(PseudonymKeyError, match="nope.key: pseudonym key file not found"):
        load_key_file(missing)
    short = tmp_path / "short.key"
    short.write_text("ab" * 16)  # 16 bytes of hex
    with pytest.raises(PseudonymKeyError, match="short.key: pseudonym key is 16 bytes"):
        load_key_file(short)


def test_write_key_file_round_trips_and_is_private(tmp_path):
    path = tmp_path / "merchant.key"
    key = write_key_file(path)
    assert load_key_file(path) == key and len(key) == MIN_KEY_BYTES
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        write_key_file(path)


def test_encoded_pseudonyms_are_the_hex_hmacs_in_one_buffer():
    ids = ["alice", "", "é", "12345"]
    subkey = hmac.new(KEY_A, b"fedseg/pseudonym/v1/user_id", hashlib.sha256).digest()
    expected = "".join(hmac.new(subkey, i.encode(), hashlib.sha256).hexdigest() for i in ids)
    encoded = Pseudonymizer(KEY_A).pseudonymize_encoded(i.encode() for i in ids)
    assert encoded == expected.encode("ascii")


def test_pseudonym_text_index_matches_the_list_api():
    import pandas as pd
    from fedseg.client.loading import pseudonym_text

    ids = pd.Index(pd.array(["u1", "é", "42"], dtype="str"))
    index = pseudonym_text(ids, Pseudonymizer(KEY_A))
    assert str(index.dtype) == "str"
    assert index.tolist() == Pseudonymizer(KEY_A).pseudonymize(["u1", "é", "42"])
