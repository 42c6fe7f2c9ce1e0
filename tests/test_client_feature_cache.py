"""The merchant's feature cache: reused only when nothing it was built from changed, the
merchant's own files, and a node built from it answers exactly as a freshly built one."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from fedseg.client import feature_cache
from fedseg.client.merchant import MerchantSettings, build_node
from fedseg.client.policy import MerchantPolicy
from fedseg.privacy.protocol.builtin import ecommerce_schema
from fedseg.privacy.pseudonyms import Pseudonymizer, write_key_file

EVENTS = pd.DataFrame(
    {
        "user_id": ["alice", "alice", "bob", "carol", "bob"],
        "timestamp": ["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z", "2024-01-03T08:00:00Z",
                      "2024-01-04T00:00:00Z", "2024-01-05T00:00:00Z"],
        "event": ["view", "purchase", "view", "purchase", "cart"],
        "item_id": ["i1", "i1", "i2", "i3", "i2"],
        "price": [10.0, 10.0, 5.0, 7.5, 5.0],
        "quantity": [None, 2, None, 1, None],
        "duration_s": [60, None, 30, None, None],
        "email": ["a@x.org", "a@x.org", "b@x.org", "c@x.org", "b@x.org"],
    }
)  # fmt: skip
AS_OF = "2024-02-01"
SCHEMA = ecommerce_schema(())  # the events have no categories


@pytest.fixture
def merchant(tmp_path):
    data = tmp_path / "shop.csv"
    EVENTS.to_csv(data, index=False)
    key = tmp_path / "shop.key"
    write_key_file(key)
    return MerchantSettings(
        data_path=str(data), merchant_id="shop", policy=MerchantPolicy(epsilon_cap=1.0),
        as_of=AS_OF, key_file=str(key), state_dir=str(tmp_path / "state"),
    )  # fmt: skip


class CountingBuild:
    """Wraps the real build, counting calls (the cache's only way to miss)."""

    def __init__(self, settings: MerchantSettings, schema=SCHEMA) -> None:
        from fedseg.client.features import customer_features
        from fedseg.client.merchant import as_of_timestamp
        from fedseg.privacy.pseudonyms import load_key_file

        self.calls = 0
        self._build = lambda: customer_features(
            settings.data_path, pseudonymizer=Pseudonymizer(load_key_file(settings.key_file)),
            schema=schema, as_of=as_of_timestamp(settings.as_of), strict=settings.strict,
        )  # fmt: skip

    def __call__(self):
        self.calls += 1
        return self._build()


def test_second_process_reads_the_cache_and_gets_the_same_features(merchant):
    build = CountingBuild(merchant)
    first = feature_cache.load_or_build(merchant, SCHEMA, build)
    second = feature_cache.load_or_build(merchant, SCHEMA, build)
    assert build.calls == 1 and not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.matrix, second.matrix)
    assert list(second.customer_ids) == list(first.customer_ids)
    assert second.customer_ids[1] == first.customer_ids[1]
    assert second.customer_ids[0:2] == first.customer_ids[0:2]
    assert second.schema == first.schema == SCHEMA and second.summary == first.summary


@pytest.mark.parametrize(
    "change",
    ["content, same size and time", "as-of", "key", "strict", "schema"],
)
def test_anything_the_features_depend_on_rebuilds(merchant, tmp_path, change):
    build = CountingBuild(merchant)
    feature_cache.load_or_build(merchant, SCHEMA, build)
    original, settings, schema = feature_cache.cache_key(merchant, SCHEMA), merchant, SCHEMA
    if change == "content, same size and time":
        data = tmp_path / "shop.csv"
        before = data.stat()
        text = data.read_text()
        data.write_text(text.replace("10.0", "11.0", 1))  # same length
        os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert data.stat().st_size == before.st_size
    elif change == "as-of":
        settings = MerchantSettings(**{**vars(merchant), "as_of": "2024-03-01"})
    elif change == "key":
        write_key_file(tmp_path / "other.key")
        settings = MerchantSettings(**{**vars(merchant), "key_file": str(tmp_path / "other.key")})
    elif change == "strict":
        settings = MerchantSettings(**{**vars(merchant), "strict": True})
    else:  # the same features under other bounds
        schema = ecommerce_schema(())
        first = schema.features[0]
        schema = type(schema)((type(first)(**{**vars(first), "upper": 1e9}), *schema.features[1:]))
    assert feature_cache.cache_key(settings, schema) != original
    again = feature_cache.load_or_build(settings, schema, CountingBuild(settings, schema))
    assert not again.from_cache and again.schema == schema


def test_a_damaged_entry_is_rebuilt_not_trusted(merchant, tmp_path):
    build = CountingBuild(merchant)
    feature_cache.load_or_build(merchant, SCHEMA, build)
    (matrix,) = (tmp_path / "state" / feature_cache.CACHE_DIR).glob("*.features.npy")
    matrix.write_bytes(matrix.read_bytes()[:-8])  # truncated
    again = feature_cache.load_or_build(merchant, SCHEMA, build)
    assert not again.from_cache and build.calls == 2
    assert feature_cache.load_or_build(merchant, SCHEMA, build).from_cache  # the rewrite is good


def test_cache_is_owner_only_and_holds_no_identifier_or_key(merchant, tmp_path):
    feature_cache.load_or_build(merchant, SCHEMA, CountingBuild(merchant))
    folder = tmp_path / "state" / feature_cache.CACHE_DIR
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list(folder.iterdir())
    assert len(files) == 3  # one entry: features, pseudonyms, meta
    key = bytes.fromhex((tmp_path / "shop.key").read_text().strip())
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        blob = path.read_bytes()
        for secret in (b"alice", b"bob", b"carol", b"@x.org", key, key.hex().encode()):
            assert secret not in blob, (path.name, secret)


def test_only_one_entry_is_kept(merchant):
    feature_cache.load_or_build(merchant, SCHEMA, CountingBuild(merchant))
    later = MerchantSettings(**{**vars(merchant), "as_of": "2024-03-01"})
    feature_cache.load_or_build(later, SCHEMA, CountingBuild(later))
    folder = os.path.join(merchant.state_dir, feature_cache.CACHE_DIR)
    assert len(os.listdir(folder)) == 3


def test_no_state_dir_or_remote_sql_means_no_cache(merchant):
    simulated = MerchantSettings(
        data_path=merchant.data_path, merchant_id="shop", policy=merchant.policy,
        as_of=AS_OF, simulation_seed=0,
    )  # fmt: skip
    for _ in range(2):
        assert not feature_cache.load_or_build(
            simulated, SCHEMA, CountingBuild(merchant)
        ).from_cache
    remote = MerchantSettings(**{**vars(merchant), "data_path": "postgresql://h/db?table=t"})
    assert feature_cache.cache_key(remote, SCHEMA) == ""


def test_node_from_the_cache_answers_like_a_fresh_one(merchant):
    fresh = build_node(merchant, SCHEMA)
    cached = build_node(merchant, SCHEMA)  # second "process": features from the cache
    np.testing.assert_array_equal(fresh.features, cached.features)
    assert fresh.schema == cached.schema == SCHEMA
    assert fresh.describe().keys() == cached.describe().keys()
    for name, value in fresh.describe().items():
        np.testing.assert_array_equal(value, cached.describe()[name])


def test_ids_are_stored_as_the_same_bytes_from_arrow_buffers_or_one_by_one(tmp_path):
    features = tmp_path / "shop.csv"
    pd.DataFrame({"user_id": [f"u{i}" for i in range(7)], "spend": range(7)}).to_csv(
        features, index=False
    )
    from fedseg.client.features import customer_features

    table, _, _ = customer_features(features, pseudonymizer=Pseudonymizer(b"k" * 32))
    for index in (table.index, table.index[2:5], table.index[::-1]):
        ids = feature_cache.RowIds(index)
        read = ids.fixed_width_bytes()
        assert read is not None and read.dtype == np.dtype("S64")
        assert read.tolist() == [u.encode() for u in ids]
    assert feature_cache.RowIds(pd.Index(["a", "bb"])).fixed_width_bytes() is None  # widths differ
    assert feature_cache.RowIds(pd.Index(["a", None])).fixed_width_bytes() is None
    mixed = feature_cache.RowIds(pd.Index(["a", "bb"]))
    assert feature_cache._id_bytes(mixed).tolist() == [b"a", b"bb"]
