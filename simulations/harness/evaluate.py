"""Scoring a fit against non-private k-means, in the space the schema defines.

Evaluation space: the schema's clustering scale (``log1p`` where flagged, known bounds
clipped), standardized with the pooled data's exact mean and standard deviation — one fixed
space for every method and ε, so cost ratios compare. For tables whose columns were
standardized already it is the raw space. The model's own assignment (what each merchant
computes from the published model) gives the partition measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.published.segments import nearest_centre
from fedseg.simulations.experiments.metrics import disagreement
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score


@dataclass(frozen=True)
class Reference:
    """The pooled data in evaluation space and scikit-learn's KMeans(n_init=10) on it."""

    x: np.ndarray  # original units
    e: np.ndarray  # evaluation space
    mean: np.ndarray
    std: np.ndarray
    cost: float
    labels: np.ndarray
    raw_cost: float  # KMeans on the raw (original-unit) data, for the historical headline

    @classmethod
    def fit(cls, x: np.ndarray, schema: FeatureSchema, k: int, *, seed: int) -> Reference:
        m = schema.to_model_space(x)
        mean, std = m.mean(axis=0), np.maximum(m.std(axis=0), 1e-12)
        e = (m - mean) / std
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(e)
        raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x).inertia_
        return cls(x, e, mean, std, float(km.inertia_), km.labels_, float(raw))

    def to_eval(self, model_space: np.ndarray) -> np.ndarray:
        return (np.asarray(model_space) - self.mean) / self.std


def cost(e: np.ndarray, centres: np.ndarray) -> float:
    labels = nearest_centre(e, centres)
    return float(np.sum((e - centres[labels]) ** 2))


def score(
    ref: Reference,
    centres_model_space: np.ndarray,
    labels: np.ndarray,
    *,
    truth: np.ndarray | None = None,
    raw_centres: np.ndarray | None = None,
) -> dict[str, float]:
    """Cost ratio (evaluation space), ARI vs planted segments, disagreement vs KMeans."""
    out = {
        "cost_ratio": cost(ref.e, ref.to_eval(centres_model_space)) / ref.cost,
        "disagreement": disagreement(labels, ref.labels),
    }
    if truth is not None:
        out["ari"] = float(adjusted_rand_score(truth, labels))
    if raw_centres is not None:
        out["raw_cost_ratio"] = cost(ref.x, raw_centres) / ref.raw_cost
    return out
