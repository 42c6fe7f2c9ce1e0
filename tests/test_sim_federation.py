"""Federations on disk (CONTRACT layout) and the Gaussian-mixture benchmark federation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fedseg.client.errors import DataError
from fedseg.simulations.data.federation import (
    Federation,
    FederationLayoutError,
    read_federation,
    write_federation,
)
from fedseg.simulations.data.mixture import (
    CENTER_BOX,
    MIN_SEPARATION,
    gaussian_mixture_federation,
    mixture_to_federation,
    write_mixture_federation,
)
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score


def _tiny_features() -> Federation:
    tables = {
        "a": pd.DataFrame({"user_id": [1, 2], "spend": [3.0, 4.0]}),
        "b": pd.DataFrame({"user_id": [3], "spend": [5.0]}),
    }
    truth = pd.DataFrame({"merchant_id": ["a", "a", "b"], "user_id": [1, 2, 3], "segment": 0})
    return Federation(merchants=tables, items=None, truth=truth, kind="features")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_in_both_formats(tmp_path, fmt):
    fed = _tiny_features()
    out = write_federation(fed, tmp_path, fmt=fmt)
    assert sorted(p.name for p in (out / "merchants").iterdir()) == [f"a.{fmt}", f"b.{fmt}"]
    back = read_federation(out)
    assert back.kind == "features" and back.items is None
    for merchant_id, table in fed.merchants.items():
        pd.testing.assert_frame_equal(back.merchants[merchant_id], table)
    pd.testing.assert_frame_equal(back.truth, fed.truth)


def test_auto_format_is_csv_when_small(tmp_path):
    write_federation(_tiny_features(), tmp_path)
    assert (tmp_path / "merchants" / "a.csv").exists()


def test_events_timestamps_survive_csv(tmp_path):
    events = pd.DataFrame(
        {
            "user_id": [1, 1],
            "timestamp": pd.to_datetime(["2024-01-02 03:04:05", "2024-02-01 00:00:00"]),
            "event": ["view", "purchase"],
            "item_id": [7, 7],
            "price": [9.5, 9.5],
        }
    )
    fed = Federation(merchants={"m": events}, items=None, truth=None, kind="events")
    back = read_federation(write_federation(fed, tmp_path, fmt="csv"))
    assert back.kind == "events"
    assert (back.merchants["m"]["timestamp"].to_numpy() == events["timestamp"].to_numpy()).all()


def test_layout_errors_name_the_problem(tmp_path):
    with pytest.raises(FederationLayoutError, match="no merchants/ directory"):
        read_federation(tmp_path)
    (tmp_path / "merchants").mkdir()
    with pytest.raises(
        FederationLayoutError, match="no .csv, .parquet or SQLite .db merchant files"
    ):
        read_federation(tmp_path)
    pd.DataFrame({"user_id": [1], "name": ["x"]}).to_csv(tmp_path / "merchants/a.csv", index=False)
    with pytest.raises(FederationLayoutError, match=r"a\.csv.*'name'.*not numeric"):
        read_federation(tmp_path)
    pd.DataFrame({"user_id": [1], "x": [1.0]}).to_csv(tmp_path / "merchants/a.csv", index=False)
    pd.DataFrame({"user_id": [1], "x": [1.0]}).to_parquet(tmp_path / "merchants/a.parquet")
    with pytest.raises(FederationLayoutError, match="two formats"):
        read_federation(tmp_path)
    (tmp_path / "merchants/a.parquet").unlink()
    pd.DataFrame({"user_id": [1]}).to_csv(tmp_path / "truth.csv", index=False)
    with pytest.raises(FederationLayoutError, match=r"truth\.csv.*'merchant_id'"):
        read_federation(tmp_path)
    assert issubclass(FederationLayoutError, DataError)
    assert issubclass(FederationLayoutError, ValueError)


def test_federation_validates_kind_and_columns():
    with pytest.raises(FederationLayoutError, match="kind"):
        Federation(merchants=_tiny_features().merchants, items=None, truth=None, kind="logs")
    events = pd.DataFrame({"user_id": [1], "timestamp": ["2024-01-01"], "event": ["view"]})
    with pytest.raises(FederationLayoutError, match=r"merchant 'm'.*\['item_id', 'price'\]"):
        Federation(merchants={"m": events}, items=None, truth=None, kind="events")


def test_mixture_shapes_labels_and_equal_sizes():
    mix = gaussian_mixture_federation(n=1003, d=4, k=3, merchants=5, alpha=1.0, seed=0)
    assert [len(p) for p in mix.parts] == [201, 201, 201, 200, 200]
    assert all(p.shape[1] == 4 for p in mix.parts)
    assert [len(lab) for lab in mix.labels] == [len(p) for p in mix.parts]
    assert mix.centers.shape == (3, 4) and (np.abs(mix.centers) <= CENTER_BOX).all()
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(mix.centers) for b in mix.centers[i + 1 :]]
    assert min(gaps) >= MIN_SEPARATION


def test_mixture_is_deterministic_and_heavy_sizes_vary():
    args = {"n": 5000, "d": 3, "k": 4, "merchants": 20, "alpha": 0.5, "sizes": "heavy"}
    one, two = (gaussian_mixture_federation(**args, seed=9) for _ in range(2))
    assert all(np.array_equal(a, b) for a, b in zip(one.parts, two.parts, strict=True))
    other = gaussian_mixture_federation(**args, seed=10)
    assert not np.array_equal(one.centers, other.centers)
    sizes = [len(p) for p in one.parts]
    assert sum(sizes) == 5000 and max(sizes) > 3 * np.median(sizes)


def test_points_scatter_around_their_centres_with_unit_std():
    mix = gaussian_mixture_federation(n=40_000, d=2, k=4, merchants=4, alpha=1.0, seed=1)
    points, labels = np.vstack(mix.parts), np.concatenate(mix.labels)
    residual = points - mix.centers[labels]
    # Sample std of 80,000 unit normals: sd ~ 0.0025, so +-0.015 is a 6-sigma band.
    assert abs(residual.std() - 1.0) < 0.015 and abs(residual.mean()) < 0.015


def test_mixture_alpha_controls_non_iid_and_kmeans_recovers_labels():
    skew = gaussian_mixture_federation(n=20_000, d=5, k=5, merchants=10, alpha=0.05, seed=2)
    flat = gaussian_mixture_federation(n=20_000, d=5, k=5, merchants=10, alpha=50.0, seed=2)

    def dominant_share(mix) -> float:
        return float(
            np.mean([np.bincount(lab, minlength=5).max() / lab.size for lab in mix.labels])
        )

    assert dominant_share(skew) > 0.8 > 0.4 > dominant_share(flat)
    points, labels = np.vstack(flat.parts), np.concatenate(flat.labels)
    found = KMeans(5, n_init=10, random_state=0).fit_predict(points)
    assert adjusted_rand_score(labels, found) > 0.99


def test_mixture_writes_a_features_federation(tmp_path):
    mix = gaussian_mixture_federation(n=300, d=2, k=2, merchants=3, alpha=1.0, seed=4)
    fed = mixture_to_federation(mix)
    assert fed.kind == "features" and list(fed.merchants) == ["m0", "m1", "m2"]
    assert list(fed.merchants["m0"].columns) == ["user_id", "x0", "x1"]
    back = read_federation(write_mixture_federation(mix, tmp_path))
    np.testing.assert_allclose(back.merchants["m1"][["x0", "x1"]].to_numpy(), mix.parts[1])
    assert (back.truth["segment"].to_numpy() == np.concatenate(mix.labels)).all()


@pytest.mark.parametrize(
    "bad", [{"n": 2, "merchants": 3}, {"alpha": 0}, {"sizes": "zipf"}, {"k": 0}]
)
def test_mixture_refuses_bad_options(bad):
    args = {"n": 100, "d": 2, "k": 2, "merchants": 2, "alpha": 1.0, "seed": 0}
    with pytest.raises(ValueError):
        gaussian_mixture_federation(**{**args, **bad})
