"""Sweep metrics: the runner's accuracy metrics with cached references, plus centroid
error and communication.

``evaluate_model`` (runner.py) rebuilds the pooled features and refits the non-private
reference on every call — about 15 s on the default federation, more than the run itself.
A sweep evaluates many models on the same federation, so ``PooledData`` is built once per
federation and k (saved as an .npz file) and reused; ``evaluate_point`` then gives the same numbers
as ``evaluate_model`` (a test checks this) plus:

- ``centroid_error``: mean distance, in the model's standardized space, from each model
  centre to its matched centre of scikit-learn ``KMeans(n_init=10)`` on the pooled data
  (Hungarian matching, ``scipy.optimize.linear_sum_assignment``); ``centroid_error_max``
  the largest such distance.
- ``bytes_per_client_round``: bytes a contributing client sent per DP Lloyd round
  (model.json history ``bytes_received`` ÷ contributors), and ``bytes_per_client_total``
  over the whole run (every release, ÷ merchants).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fedseg.privacy.published.segments import nearest_centre
from fedseg.server.model import SegmentModel
from fedseg.simulations.experiments.metrics import (
    cost_ratio,
    disagreement,
    kmeans_cost,
    partition_metrics,
    reference_cost,
    reference_kmeans,
)
from fedseg.simulations.experiments.runner import pooled_features
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class PooledData:
    """Pooled customer features (original units), planted segments, reference cost at k."""

    x: np.ndarray
    truth: np.ndarray | None
    k: int
    reference_cost: float


def pooled_data(
    data_dir: str | Path, *, k: int, seed: int, cache_dir: Path | None = None
) -> PooledData:
    """Pooled features and the non-private reference cost, cached as ``pooled-k{k}-seed{s}.npz``."""
    data_dir = Path(data_dir)
    cache = (cache_dir or data_dir) / f"pooled-k{k}-seed{seed}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as saved:
            truth = saved["truth"] if saved["has_truth"] else None
            return PooledData(saved["x"], truth, k, float(saved["reference_cost"]))
    x, truth = pooled_features(data_dir, seed=seed)
    cost = reference_cost(x, k, seed=max(seed, 0))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache,
        x=x,
        truth=truth if truth is not None else np.zeros(0),
        has_truth=truth is not None,
        reference_cost=cost,
    )
    return PooledData(x, truth, k, cost)


def evaluate_point(model: SegmentModel, pooled: PooledData, *, seed: int) -> dict[str, Any]:
    """Accuracy and communication metrics of one fitted model (see module docstring)."""
    if model.k != pooled.k:
        raise ValueError(
            f"model has k={model.k} but the pooled reference was built for k={pooled.k}"
        )
    seed = max(seed, 0)
    z = model.scaling.transform(pooled.x)
    reference_z = reference_kmeans(z, model.k, seed=seed)
    errors = centroid_errors(model.centres_standardized, reference_z.cluster_centers_)
    metrics: dict[str, Any] = {
        "cost_ratio": cost_ratio(kmeans_cost(pooled.x, model.centroids), pooled.reference_cost),
        "cost_ratio_model_space": cost_ratio(
            kmeans_cost(z, model.centres_standardized), float(reference_z.inertia_)
        ),
    }
    labels = nearest_centre(z, model.centres_standardized)
    metrics["disagreement"] = disagreement(labels, reference_z.labels_)
    if pooled.truth is not None:
        metrics.update(partition_metrics(pooled.truth, labels))
    metrics["n_users"] = int(len(pooled.x))
    metrics["empty_clusters"] = int(np.sum(model.segment_sizes < 1))
    metrics["centroid_error"] = float(errors.mean())
    metrics["centroid_error_max"] = float(errors.max())
    metrics.update(communication(model.history))
    return metrics


def centroid_errors(centres: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance of each reference centre to its model centre under the best one-to-one match."""
    distances = np.linalg.norm(centres[:, None, :] - reference[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(distances)
    return distances[rows, cols]


def communication(history: list[dict]) -> dict[str, float]:
    """Bytes each client sent: per DP Lloyd round (mean) and over the whole run."""
    lloyd = [h for h in history if h.get("task") == "cluster_displacements"]
    per_round = [h["bytes_received"] / max(len(h.get("contributors", [])), 1) for h in lloyd]
    asked = max((h.get("asked", 0) for h in history), default=0)
    total = sum(h.get("bytes_received", 0) for h in history)
    return {
        "bytes_per_client_round": float(np.mean(per_round)) if per_round else 0.0,
        "bytes_per_client_total": total / max(asked, 1),
    }
