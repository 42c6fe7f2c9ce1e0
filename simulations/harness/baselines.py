"""Central-DP baseline in the same run: diffprivlib's KMeans given the true bounds.

diffprivlib 0.6.6 imports its random-forest module at package import, which fails with
scikit-learn ≥ 1.9 (``sklearn.tree._tree.DOUBLE``); its k-means does not need it, so the
forest module is stubbed before import. It runs on the pooled data in evaluation space with
the data's own per-feature (min, max) as bounds — a central, generously informed baseline.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
from fedseg.privacy.published.segments import nearest_centre
from fedseg.simulations.harness.evaluate import Reference, score


def _diffprivlib_kmeans():
    if "diffprivlib.models.forest" not in sys.modules:
        stub = types.ModuleType("diffprivlib.models.forest")
        stub.RandomForestClassifier = stub.DecisionTreeClassifier = None
        sys.modules["diffprivlib.models.forest"] = stub
    from diffprivlib.models.k_means import KMeans

    return KMeans


def diffprivlib_score(
    ref: Reference, k: int, epsilon: float, *, seed: int, truth: np.ndarray | None
) -> dict | None:
    if not math.isfinite(epsilon):
        return None
    import warnings

    kmeans = _diffprivlib_kmeans()
    bounds = (ref.e.min(axis=0), ref.e.max(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = kmeans(n_clusters=k, epsilon=epsilon, bounds=bounds, random_state=seed).fit(ref.e)
    centres = model.cluster_centers_
    labels = nearest_centre(ref.e, centres)
    return score(ref, centres * ref.std + ref.mean, labels, truth=truth)
