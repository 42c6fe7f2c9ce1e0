"""An in-memory Gaussian-mixture federation for clustering benchmarks.

Like scikit-learn's ``make_blobs``: centres uniform in the box [-CENTER_BOX, CENTER_BOX]^d,
each cluster an isotropic Gaussian with standard deviation CLUSTER_STD. Unlike make_blobs the
separation is guaranteed: centres are redrawn until every pair is at least
MIN_SEPARATION (in units of the cluster std) apart, so the planted labels are what an
optimal k-means finds. Merchant m's customers come from a Dirichlet(alpha) mix of clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.simulations.data.federation import Federation, write_federation
from fedseg.simulations.data.synthetic import assign_personas, merchant_ids, merchant_sizes

CENTER_BOX = 10.0
CLUSTER_STD = 1.0
MIN_SEPARATION = 6.0  # minimum centre distance, in cluster standard deviations
MAX_CENTER_DRAWS = 10_000
SIZES = ("equal", "heavy")


@dataclass(frozen=True)
class MixtureFederation:
    """Per-merchant points and planted cluster labels, and the true centres (k, d)."""

    parts: list[np.ndarray]
    labels: list[np.ndarray]
    centers: np.ndarray


def gaussian_mixture_federation(
    *,
    n: int,
    d: int,
    k: int,
    merchants: int,
    alpha: float,
    seed: int,
    sizes: str = "equal",
) -> MixtureFederation:
    """n points in d dimensions from k separated Gaussians, split over merchants.

    sizes="equal" gives every merchant n // merchants points (the first n % merchants one
    more); "heavy" draws lognormal merchant sizes as the synthetic generator does.
    """
    if min(n, d, k, merchants) < 1 or n < merchants:
        raise ValueError(f"need n >= merchants >= 1 and d, k >= 1; got {n=}, {d=}, {k=}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if sizes not in SIZES:
        raise ValueError(f"sizes must be one of {SIZES}, got {sizes!r}")
    rng = np.random.default_rng(seed)
    centers = separated_centers(k, d, rng)
    if sizes == "equal":
        counts = np.full(merchants, n // merchants) + (np.arange(merchants) < n % merchants)
    else:
        counts = merchant_sizes(n, merchants, rng)
    labels = assign_personas(counts, k, alpha, rng)
    points = centers[labels] + CLUSTER_STD * rng.standard_normal((n, d))
    bounds = np.cumsum(counts)[:-1]
    return MixtureFederation(
        parts=np.split(points, bounds), labels=np.split(labels, bounds), centers=centers
    )


def separated_centers(k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """k centres in the box, pairwise at least MIN_SEPARATION * CLUSTER_STD apart."""
    centers: list[np.ndarray] = []
    for _ in range(MAX_CENTER_DRAWS):
        candidate = rng.uniform(-CENTER_BOX, CENTER_BOX, d)
        if all(np.linalg.norm(candidate - c) >= MIN_SEPARATION * CLUSTER_STD for c in centers):
            centers.append(candidate)
            if len(centers) == k:
                return np.array(centers)
    raise ValueError(f"cannot place {k} separated centres in {d} dimension(s); lower k")


def mixture_to_federation(mixture: MixtureFederation) -> Federation:
    """A features-kind Federation: columns x0..x{d-1}, user ids unique across merchants."""
    ids = merchant_ids(len(mixture.parts))
    offsets = np.cumsum([0] + [len(p) for p in mixture.parts])
    tables, truth = {}, []
    for merchant_id, points, labels, start in zip(
        ids, mixture.parts, mixture.labels, offsets[:-1], strict=True
    ):
        user_id = start + np.arange(len(points))
        columns = {f"x{j}": points[:, j] for j in range(points.shape[1])}
        tables[merchant_id] = pd.DataFrame({"user_id": user_id, **columns})
        truth.append(
            pd.DataFrame({"merchant_id": merchant_id, "user_id": user_id, "segment": labels})
        )
    return Federation(
        merchants=tables, items=None, truth=pd.concat(truth, ignore_index=True), kind="features"
    )


def write_mixture_federation(
    mixture: MixtureFederation, out_dir: str | Path, *, fmt: str = "auto"
) -> Path:
    """Write the mixture as a features-kind federation on disk (merchants/, truth.csv)."""
    return write_federation(mixture_to_federation(mixture), out_dir, fmt=fmt)
