"""Evaluation of a fitted model against the pooled data (researchers only, never a client)."""

from __future__ import annotations

import warnings

import numpy as np
from fedseg.privacy.published.segments import nearest_centre
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def kmeans_cost(x: np.ndarray, centres: np.ndarray) -> float:
    """Sum of squared distances from each row to its nearest centre."""
    labels = nearest_centre(x, centres)
    return float(np.sum((x - centres[labels]) ** 2))


def reference_kmeans(x: np.ndarray, k: int, *, seed: int) -> KMeans:
    """Non-private scikit-learn KMeans(n_init=10) on the pooled data. With fewer distinct
    customers than k it finds fewer clusters, which is the best cost there is: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)


def reference_cost(x: np.ndarray, k: int, *, seed: int) -> float:
    """Cost of non-private scikit-learn KMeans(n_init=10) on the pooled data."""
    return float(reference_kmeans(x, k, seed=seed).inertia_)


def cost_ratio(cost: float, reference: float) -> float | None:
    """cost ÷ the reference's; None where the reference is 0 (every customer on a centre)."""
    return cost / reference if reference > 0 else None


def clustering_metrics(
    x: np.ndarray,
    centres: np.ndarray,
    *,
    k: int,
    truth: np.ndarray | None = None,
    seed: int = 0,
    model_space: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """cost_ratio in original units; ARI/NMI against planted segments when known; with
    ``model_space`` the share of customers whose segment differs from the non-private fit's
    (``disagreement``, the partition measure where no segments were planted).

    ``model_space`` = (pooled rows, centres) in the standardized space the model was fitted
    in: its cost ratio is the one to read. ``cost_ratio`` compares, in original units,
    centres fitted on log-scaled standardized features with a KMeans fitted on the raw
    units — a different objective, dominated by the largest-valued features
    (docs/segmentation.md).
    """
    out = {"cost_ratio": cost_ratio(kmeans_cost(x, centres), reference_cost(x, k, seed=seed))}
    space, space_centres = model_space if model_space is not None else (x, centres)
    labels = nearest_centre(space, space_centres)
    if model_space is not None:
        reference = reference_kmeans(space, k, seed=seed)
        out["cost_ratio_model_space"] = cost_ratio(
            kmeans_cost(space, space_centres), float(reference.inertia_)
        )
        out["disagreement"] = disagreement(labels, reference.labels_)
    if truth is not None:
        out.update(partition_metrics(truth, labels))
    return out


def disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of customers whose segment differs between two partitions, after matching
    segments one to one (0 = the same partition)."""
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    table = np.zeros((ka, kb))
    np.add.at(table, (a, b), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(1.0 - table[rows, cols].sum() / len(a))


def partition_metrics(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ARI and NMI against the planted segments of the customers truth.csv lists (NaN for
    the others), the share it lists and how many it misses."""
    known = ~np.isnan(np.asarray(truth, dtype=np.float64))
    return {
        "ari": float(adjusted_rand_score(truth[known], labels[known])),
        "nmi": float(normalized_mutual_info_score(truth[known], labels[known])),
        "truth_coverage": float(known.mean()),
        "truth_missing": int((~known).sum()),
    }
