"""The harness's federations: per-merchant feature arrays, planted segments, the schema.

Event data go through the merchants' own feature builder (``client/features.py``) with one
public ``as_of`` for every merchant (the latest event of the federation), so the arrays are
what a merchant node would hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from fedseg.privacy.protocol.builtin import (
    cdnow_schema,
    ecommerce_schema,
    movielens_schema,
    numeric_table_schema,
)
from fedseg.privacy.protocol.schema import Feature, FeatureSchema


@dataclass(frozen=True)
class HarnessData:
    """Merchants' features (original units), planted labels if any, and the schema."""

    name: str
    parts: list[np.ndarray]
    schema: FeatureSchema
    k: int
    labels: list[np.ndarray] | None = None

    @property
    def pooled(self) -> np.ndarray:
        return np.vstack(self.parts)

    @property
    def truth(self) -> np.ndarray | None:
        return None if self.labels is None else np.concatenate(self.labels)


def mixture(*, n: int, d: int, k: int, merchants: int, alpha: float, seed: int) -> HarnessData:
    """simulations/data/mixture.py's separated Gaussian mixture; every bound unknown."""
    from fedseg.simulations.data.mixture import gaussian_mixture_federation

    mix = gaussian_mixture_federation(n=n, d=d, k=k, merchants=merchants, alpha=alpha, seed=seed)
    schema = numeric_table_schema([f"x{j}" for j in range(d)], name="mixture")
    return HarnessData(
        f"mixture-n{n}-d{d}-k{k}-m{merchants}", list(mix.parts), schema, k, list(mix.labels)
    )


def google_synthetic(
    *, n: int = 100_000, d: int = 100, k: int = 64, merchants: int = 100, seed: int = 0,
    cluster_ratio: float = 8.0, radius: float = 1.0,
) -> HarnessData:  # fmt: skip
    """Google's DP-clustering demo data: centres uniform in the ball of radius
    radius·(1 − 1/ratio); points N(centre, (radius/ratio/√d)² I) clipped to the ball of
    ``radius``. The ball is public, so every coordinate has public bounds [-radius, radius]."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal((k, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    centres = direction * (radius * (1 - 1 / cluster_ratio) * rng.uniform(size=(k, 1)) ** (1 / d))
    labels = rng.integers(k, size=n)
    x = centres[labels] + rng.normal(scale=radius / cluster_ratio / np.sqrt(d), size=(n, d))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x *= np.minimum(1.0, radius / norms)
    features = tuple(Feature(f"x{j}", "numeric", "", -radius, radius) for j in range(d))
    split = np.array_split(np.arange(n), merchants)
    return HarnessData(
        f"google-n{n}-d{d}-k{k}-m{merchants}", [x[s] for s in split],
        FeatureSchema(features, name="google-synthetic"), k, [labels[s] for s in split],
    )  # fmt: skip


SKLEARN_TABLES = {"iris": 3, "wine": 3, "breast_cancer": 2, "digits": 10}


def sklearn_table(name: str, *, merchants: int = 5, seed: int = 0) -> HarnessData:
    """A bundled scikit-learn data set, standardized column by column, split at random."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float64)
    keep = x.std(axis=0) > 0  # digits has constant border pixels
    x = (x[:, keep] - x[:, keep].mean(axis=0)) / x[:, keep].std(axis=0)
    y = np.asarray(bunch.target)
    order = np.random.default_rng(seed).permutation(len(x))
    split = np.array_split(order, merchants)
    schema = numeric_table_schema([f"c{j}" for j in range(x.shape[1])], name=name)
    return HarnessData(
        name, [x[s] for s in split], schema, SKLEARN_TABLES[name], [y[s] for s in split]
    )


def _event_features(fed, schema: FeatureSchema, *, seed: int) -> tuple[list, list | None]:
    from fedseg.client.features import customer_features
    from fedseg.privacy.pseudonyms import Pseudonymizer

    as_of = max(t["timestamp"].max() for t in fed.merchants.values())
    parts, labels = [], []
    for merchant_id, table in fed.merchants.items():
        pseudonymizer = Pseudonymizer.for_simulation(merchant_id, seed)
        features, _, _ = customer_features(
            table, pseudonymizer=pseudonymizer, schema=schema, as_of=as_of, source_name=merchant_id
        )
        parts.append(features.to_numpy(dtype=np.float64))
        if fed.truth is not None:
            mine = fed.truth[fed.truth["merchant_id"] == merchant_id]
            segment = dict(
                zip(pseudonymizer.pseudonymize(mine["user_id"].astype(str)), mine["segment"], strict=True)
            )  # fmt: skip
            labels.append(features.index.map(segment).to_numpy())
    return parts, (labels if fed.truth is not None else None)


def synthetic_events(*, users: int, merchants: int, seed: int, k: int = 5) -> HarnessData:
    """`fedseg generate`'s federation (events), through the e-commerce schema."""
    from fedseg.simulations.data.synthetic import generate_federation

    fed = generate_federation(users=users, merchants=merchants, segments=k, seed=seed)
    schema = ecommerce_schema()
    parts, labels = _event_features(fed, schema, seed=seed)
    return HarnessData(f"events-{users}x{merchants}", parts, schema, k, labels)


def cdnow(*, merchants: int = 10, k: int = 5, schema: FeatureSchema | None = None) -> HarnessData:
    """CDNOW's 23,570 customers through the RFM schema (no planted segments)."""
    from fedseg.simulations.data.datasets import load_cdnow

    schema = schema or cdnow_schema()
    parts, _ = _event_features(load_cdnow(merchants=merchants), schema, seed=0)
    return HarnessData(f"cdnow-{schema.name}", parts, schema, k)


def movielens(*, regions: int = 10, k: int = 5) -> HarnessData:
    """MovieLens-100k's 943 users through the behaviour-and-genre schema."""
    from fedseg.simulations.data.datasets import load_movielens_100k

    schema = movielens_schema()
    parts, _ = _event_features(load_movielens_100k(regions=regions), schema, seed=0)
    return HarnessData("movielens", parts, schema, k)


def as_frame(data: HarnessData) -> pd.DataFrame:
    return pd.DataFrame(data.pooled, columns=list(data.schema.names))
