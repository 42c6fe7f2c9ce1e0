"""``fedseg.DPKMeans``: the federated DP k-means as a scikit-learn estimator.

``fit`` runs the real ServerApp and ClientApps in this process (the in-process backend of
``fedseg simulate``) over one table, or a list of tables, one per merchant. Every release
is the federation's own and is accounted the same way: ``epsilon`` is the total user-level
ε of the fit (clip ranges, initialization, every Lloyd round) at ``delta``, for the
neighbouring relation "one customer's row at one merchant added or removed".

Beside diffprivlib's ``KMeans(n_clusters, epsilon, bounds)``: ``bounds`` is optional —
given (public, never read off the data), the features are clipped to it, as the run's
feature schema; without it the clip ranges come from a DP release inside ``epsilon``.
The model clusters in its own standardized space, so ``predict`` takes the nearest centre
there and ``transform`` gives distances there; ``cluster_centers_`` are in the input's
units.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.privacy import releases
from fedseg.privacy.protocol.schema import Feature, FeatureSchema
from fedseg.server.model import SegmentModel
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data


class DPKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """k-means with user-level differential privacy, fitted as a federation would fit it.

    Parameters are stored as given and validated in ``fit`` (scikit-learn's convention).
    ``random_state`` seeds the noise and the initialization; None draws from the OS.
    ``max_iter`` is the number of DP Lloyd rounds (each one is charged to ``epsilon``).
    ``bounds``: ``(lower, upper)``, scalars or one value per feature, public clip bounds.
    """

    def __init__(
        self,
        n_clusters: int = 5,
        *,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        bounds=None,
        max_iter: int = 4,
        noise: str = "local",
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.epsilon = epsilon
        self.delta = delta
        self.bounds = bounds
        self.max_iter = max_iter
        self.noise = noise
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Fit on ``X`` (one merchant's table) or a list of tables (one per merchant)."""
        tables = self._validated_tables(X)
        n_samples = sum(len(t) for t in tables)
        if not isinstance(self.n_clusters, int | np.integer) or self.n_clusters < 2:
            raise ValueError(f"n_clusters must be an integer of at least 2, got {self.n_clusters}")
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}")
        schema = self._schema(tables[0].shape[1])
        self.model_ = self._federated_fit(tables, schema)
        self.cluster_centers_ = self.model_.centroids
        pooled = np.vstack(tables)
        self.labels_ = self.model_.predict(pooled)
        distances = self._distances(pooled)
        self.inertia_ = float(np.sum(distances[np.arange(len(pooled)), self.labels_] ** 2))
        self.n_iter_ = sum(1 for h in self.model_.history if h.get("task") == releases.LLOYD)
        self.epsilon_ = float(self.model_.privacy["epsilon"])
        self.segment_sizes_ = np.asarray(self.model_.segment_sizes, dtype=float)  # noisy
        return self

    def predict(self, X) -> np.ndarray:
        """The segment (0 … n_clusters-1) of each row: nearest centre in the model's space."""
        check_is_fitted(self)
        return self.model_.predict(validate_data(self, X, reset=False))

    def transform(self, X) -> np.ndarray:
        """Distances of each row to every centre, in the model's standardized space."""
        check_is_fitted(self)
        return self._distances(validate_data(self, X, reset=False))

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).labels_

    @classmethod
    def from_model(cls, model: SegmentModel | str | Path) -> DPKMeans:
        """A fitted estimator of a published model (its model.json): predict and transform
        as the model does; ``fit`` refits with privacy, never without."""
        if not isinstance(model, SegmentModel):
            model = SegmentModel.load(model)
        estimator = cls(n_clusters=model.k, epsilon=float(model.privacy.get("epsilon", 1.0)),
                        delta=float(model.privacy.get("delta", 1e-6)))  # fmt: skip
        estimator.model_ = model
        estimator.cluster_centers_ = model.centroids
        estimator.n_features_in_ = model.scaling.dim
        estimator.feature_names_in_ = np.asarray(model.features, dtype=object)
        estimator.epsilon_ = estimator.epsilon
        estimator.segment_sizes_ = np.asarray(model.segment_sizes, dtype=float)
        return estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    def _validated_tables(self, X) -> list[np.ndarray]:
        """One float array per merchant, every one with the columns (and names) of the first."""
        if isinstance(X, list | tuple) and X and not np.isscalar(X[0]) and np.ndim(X[0]) == 2:
            tables = [validate_data(self, X[0], reset=True)]
            tables += [validate_data(self, t, reset=False) for t in X[1:]]
        else:
            tables = [validate_data(self, X, reset=True)]
        return [np.asarray(t, dtype=np.float64) for t in tables]

    def _schema(self, n_features: int) -> FeatureSchema | None:
        """The public bounds as the run's feature schema (None: ranges found privately)."""
        if self.bounds is None:
            return None
        try:
            lower, upper = (np.broadcast_to(np.asarray(b, dtype=float), (n_features,))
                            for b in self.bounds)  # fmt: skip
        except (TypeError, ValueError):
            raise ValueError(
                f"bounds must be (lower, upper), scalars or {n_features} values each"
            ) from None
        if not (
            np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(lower < upper)
        ):
            raise ValueError("bounds: every lower bound must be finite and below its upper bound")
        features = (Feature(name, lower=float(lo), upper=float(hi))
                    for name, lo, hi in zip(_columns(n_features), lower, upper, strict=True))  # fmt: skip
        return FeatureSchema(tuple(features), name="DPKMeans bounds")

    def _federated_fit(
        self, tables: Sequence[np.ndarray], schema: FeatureSchema | None
    ) -> SegmentModel:
        from fedseg.simulations.experiments.runner import simulate

        rng = check_random_state(self.random_state)
        seed = -1 if self.random_state is None else int(rng.randint(2**31 - 1))
        config = {"k": int(self.n_clusters), "epsilon": float(self.epsilon),
                  "delta": float(self.delta), "rounds": int(self.max_iter),
                  "noise": self.noise, "seed": seed}  # fmt: skip
        if self.noise == "distributed":
            config["secure-agg"] = True
        with (
            tempfile.TemporaryDirectory(prefix="fedseg-dpkmeans-") as scratch,
            _quiet(self.verbose),
        ):
            data = Path(scratch) / "federation"
            (data / "merchants").mkdir(parents=True)
            if schema is not None:  # a federation's public schema (docs/contract.md)
                (data / "schema.toml").write_text(schema.to_toml())
                (data / "federation.toml").write_text('features = "schema.toml"\n')
            for i, table in enumerate(tables):
                frame = pd.DataFrame(table, columns=_columns(table.shape[1]))
                frame.insert(0, "user_id", [str(r) for r in range(len(frame))])
                frame.to_parquet(data / "merchants" / f"merchant{i:04d}.parquet", index=False)
            result = simulate(data, config, out_dir=Path(scratch) / "out", evaluate=False)
        return result.model

    def _distances(self, X: np.ndarray) -> np.ndarray:
        z = self.model_.scaling.transform(X)
        centres = self.model_.centres_standardized
        return np.sqrt(((z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))


def _columns(n_features: int) -> list[str]:
    """Neutral names: a feature's name never changes how it is treated (no log by name)."""
    width = max(1, math.ceil(math.log10(n_features + 1)))
    return [f"x{i:0{width}d}" for i in range(n_features)]


@contextmanager
def _quiet(verbose: int):
    """Flower's per-round log lines only with ``verbose``."""
    logger = logging.getLogger("flwr")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


__all__ = ["DPKMeans"]
