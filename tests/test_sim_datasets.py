"""Real data loaders: CDNOW (lifetimes wheel) and MovieLens-100k (recbole wheel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fedseg.simulations.data.datasets import (
    DatasetNotInstalledError,
    _package_file,
    load_cdnow,
    load_dataset,
    load_movielens_100k,
    zip_zones,
)


def test_cdnow_counts_and_merchant_rule():
    fed = load_cdnow(merchants=7)
    events = pd.concat(fed.merchants.values(), ignore_index=True)
    assert len(events) == 69_659 and events["user_id"].nunique() == 23_570
    assert (events["event"] == "purchase").all() and (events["item_id"] == "cd").all()
    for index, (merchant_id, table) in enumerate(fed.merchants.items()):
        assert merchant_id == f"m{index}"
        assert (table["user_id"] % 7 == index).all()
    assert fed.truth is None and fed.kind == "events"
    # price = dollars / CDs, so price * quantity recovers the file's total dollar value.
    assert events["quantity"].sum() == 167_881
    assert abs((events["price"] * events["quantity"]).sum() - 2_500_315.63) < 5.0
    assert events["timestamp"].min() == pd.Timestamp("1997-01-01")


def test_movielens_counts_and_regions():
    fed = load_movielens_100k()
    assert list(fed.merchants) == [f"region{r}" for r in range(10)]
    events = pd.concat(fed.merchants.values(), ignore_index=True)
    assert len(events) == 100_000 and events["rating"].notna().all()
    assert events["user_id"].nunique() == 943
    owners = [set(t["user_id"]) for t in fed.merchants.values()]
    assert sum(len(o) for o in owners) == 943  # every user in exactly one region
    assert (events["event"] == "review").all() and events["category"].notna().all()
    assert len(fed.items) == 1682 and set(events["item_id"]) <= set(fed.items["item_id"])
    assert events["rating"].between(1, 5).all()


def test_zip_zone_rule():
    zones = zip_zones(pd.Series(["85711", "02138", "T8H1N", " 9", "V3N4P"]))
    assert zones.tolist() == [8, 0, 0, 9, 0]


def test_fewer_regions_fold_zones():
    fed = load_movielens_100k(regions=3)
    assert len(fed.merchants) == 3
    assert sum(len(t) for t in fed.merchants.values()) == 100_000
    with pytest.raises(ValueError, match="regions"):
        load_movielens_100k(regions=11)


def test_load_dataset_dispatch_and_unknown_name():
    fed = load_dataset("synthetic", users=200, merchants=2, seed=1)
    assert fed.truth is not None and len(fed.merchants) == 2
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("ml-1m")


def test_missing_package_names_the_pip_command():
    with pytest.raises(DatasetNotInstalledError, match=r"pip install --no-deps nopkg_fedseg==1\.0"):
        _package_file("nopkg_fedseg", "1.0", "data.txt")
    with pytest.raises(
        DatasetNotInstalledError, match=r"pip install --no-deps lifetimes==0\.11\.3"
    ):
        _package_file("lifetimes", "0.11.3", "datasets", "no_such_file.txt")
    assert np.issubdtype(load_cdnow(merchants=1).merchants["m0"]["price"].dtype, np.floating)
