"""Real data sets as federations, read from the wheels that ship them (never copied here).

- CDNOW (Fader & Hardie; inside ``lifetimes==0.11.3``): 23,570 customers' 69,659 CD
  purchases, 1997-01 to 1998-06. Each row becomes one ``purchase`` event: item_id "cd",
  quantity = number of CDs, price = dollars / CDs, timestamp = the day at midnight. The
  data are split over merchants by ``customer_id mod merchants`` (customer ids are
  sequential, so merchants are near-equal and IID). No ground truth.
- MovieLens-100k (GroupLens; inside ``recbole==1.2.1``; its licence forbids
  redistribution): 943 users' 100,000 ratings of 1,682 films. Each rating becomes one
  ``review`` event carrying ``rating`` (a review is what a rating is; views and reviews
  may omit a price, so price is empty), category = the film's first listed genre. Users
  are split into regions by the first digit of their ZIP code (the US ZIP zone,
  0 = Northeast ... 9 = West), zone mod ``regions``; the 18 non-numeric (Canadian)
  postal codes go to region 0. No ground truth.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fedseg.simulations.data.federation import Federation
from fedseg.simulations.data.synthetic import generate_federation, merchant_ids

DATASETS = ("synthetic", "cdnow", "ml-100k")
CANADIAN_REGION = 0
# Public as-of dates: the day after each data set's last record (CDNOW ends 1998-06-30,
# MovieLens-100k's last rating is on 1998-04-22).
CDNOW_AS_OF = "1998-07-01T00:00:00Z"
MOVIELENS_AS_OF = "1998-04-23T00:00:00Z"


class DatasetNotInstalledError(ValueError):
    """The wheel that ships a real data set is not installed."""


def load_dataset(name: str, **kw: Any) -> Federation:
    """A federation by name: "synthetic" (kw go to generate_federation), "cdnow", "ml-100k"."""
    if name == "synthetic":
        return generate_federation(**kw)
    if name == "cdnow":
        return load_cdnow(**kw)
    if name == "ml-100k":
        return load_movielens_100k(**kw)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_cdnow(*, merchants: int = 10) -> Federation:
    """CDNOW purchases as events, customers split by ``customer_id mod merchants``."""
    if merchants < 1:
        raise ValueError(f"merchants must be >= 1, got {merchants}")
    path = _package_file("lifetimes", "0.11.3", "datasets", "CDNOW_master.txt")
    raw = pd.read_csv(path, sep=r"\s+")
    quantity = raw["number_of_cds"].to_numpy(dtype=float)
    events = pd.DataFrame(
        {
            "user_id": raw["customer_id"].to_numpy(),
            "timestamp": pd.to_datetime(raw["date"].astype(str), format="%Y%m%d"),
            "event": "purchase",
            "item_id": "cd",
            "price": np.round(raw["dollar_value"].to_numpy() / quantity, 4),
            "quantity": quantity,
        }
    )
    region = events["user_id"].to_numpy() % merchants
    return _split(events, region, merchant_ids(merchants), items=None, as_of=CDNOW_AS_OF,
                  features="cdnow")  # fmt: skip


def load_movielens_100k(*, regions: int = 10) -> Federation:
    """MovieLens-100k ratings as review events, users split into regions by ZIP zone."""
    if not 1 <= regions <= 10:
        raise ValueError(f"regions must be between 1 and 10 (ZIP zones), got {regions}")
    folder = _package_file("recbole", "1.2.1", "dataset_example", "ml-100k", "ml-100k.inter").parent
    inter = _read_atomic(folder / "ml-100k.inter")
    users = _read_atomic(folder / "ml-100k.user")
    films = _read_atomic(folder / "ml-100k.item")
    items = pd.DataFrame(
        {
            "item_id": films["item_id"].astype(int),
            "category": films["class"].fillna("unknown").str.split().str[0],
            "price": np.nan,
            "title": films["movie_title"],
            "genres": films["class"].fillna("unknown").str.split().str.join("|"),
            "year": pd.to_numeric(films["release_year"], errors="coerce"),
        }
    )
    category = inter["item_id"].astype(int).map(items.set_index("item_id")["category"])
    events = pd.DataFrame(
        {
            "user_id": inter["user_id"].astype(int),
            "timestamp": pd.to_datetime(inter["timestamp"].astype(float), unit="s"),
            "event": "review",
            "item_id": inter["item_id"].astype(int),
            "price": np.nan,
            "category": category,
            "rating": inter["rating"].astype(float),
        }
    )
    zone = zip_zones(users["zip_code"])
    user_region = pd.Series(zone % regions, index=users["user_id"].astype(int))
    region = events["user_id"].map(user_region)
    if region.isna().any():
        unknown = events.loc[region.isna(), "user_id"].iloc[0]
        raise ValueError(f"{folder / 'ml-100k.inter'}: user {unknown} is not in ml-100k.user")
    names = [f"region{r}" for r in range(regions)]
    return _split(events, region.to_numpy(dtype=int), names, items=items, as_of=MOVIELENS_AS_OF,
                  features="movielens")  # fmt: skip


def zip_zones(zip_codes: pd.Series) -> np.ndarray:
    """First digit of each ZIP code; CANADIAN_REGION for codes that do not start with one."""
    first = zip_codes.astype(str).str.strip().str[:1]
    numeric = first.str.isdigit().fillna(False).to_numpy(dtype=bool)
    zone = np.full(len(first), CANADIAN_REGION)
    zone[numeric] = first[numeric].astype(int).to_numpy()
    return zone


def _split(
    events: pd.DataFrame,
    region: np.ndarray,
    names: list[str],
    *,
    items: pd.DataFrame | None,
    as_of: str,
    features: str,
) -> Federation:
    merchants = {
        name: events[region == index].reset_index(drop=True) for index, name in enumerate(names)
    }
    merchants = {name: table for name, table in merchants.items() if len(table)}
    return Federation(merchants=merchants, items=items, truth=None, kind="events", as_of=as_of,
                      features=features)  # fmt: skip


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header names carry a ``:type`` suffix."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    return table.rename(columns=lambda c: c.split(":")[0])


def _package_file(package: str, version: str, *parts: str) -> Path:
    """A data file inside an installed wheel, located without importing the package."""
    spec = importlib.util.find_spec(package)
    install = f"pip install --no-deps {package}=={version}"
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotInstalledError(f"the {package} package is not installed; run: {install}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise DatasetNotInstalledError(f"{path} not found; reinstall with: {install}")
    return path
