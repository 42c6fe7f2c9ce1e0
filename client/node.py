"""A merchant's side of the protocol: answer the server's requests with DP statistics.

The node holds one feature vector per customer and never returns anything derived from
them except through a ``GaussianMechanism`` whose cost its own ledger has accepted
first. The server only declares noise parameters; the node computes the sensitivity
itself from its own clipping, so a server cannot talk it into releasing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fedseg.client.statistics import cluster_statistics, feature_histograms
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.scaling import FeatureScaling


class BadRequest(ValueError):
    """The server asked for something malformed; nothing was computed or released."""


@dataclass(frozen=True)
class ReleaseMode:
    noise_share: float = 1.0  # fraction of the noise variance this node adds
    charge: bool = True  # False only when the caller charges the ledger itself


class MerchantNode:
    """Answers ``describe``, ``feature_histograms`` and ``cluster_stats`` requests."""

    def __init__(
        self,
        features: np.ndarray,
        *,
        names: Sequence[str],
        log: Sequence[bool],
        lower: Sequence[float],
        upper: Sequence[float],
        ledger: PrivacyLedger,
        rng_for: Callable[[int], np.random.Generator],
    ) -> None:
        self.features = np.asarray(features, dtype=np.float64)
        self.names = tuple(names)
        self.log = tuple(bool(v) for v in log)
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.ledger = ledger
        self.rng_for = rng_for
        self._cached_scaling: FeatureScaling | None = None
        self._cached_z = np.empty((0, len(self.names)))
        self._scaling_key: tuple = ()
        self._scaling_built: tuple[FeatureScaling, float] | None = None
        self._handlers: dict[str, Callable[[Mapping[str, Any], ReleaseMode], dict]] = {
            "describe": self._describe,
            "feature_histograms": self._histograms,
            "cluster_stats": self._cluster_stats,
            "square_norm": self._square_norm,
        }

    def register(
        self, task: str, handler: Callable[[Mapping[str, Any], ReleaseMode], dict]
    ) -> None:
        """Answer ``task`` with ``handler`` too (the recommender rounds: client.recommender.tasks);
        it must charge the ledger before any noise when ``mode.charge`` is set."""
        self._handlers[task] = handler

    def handle(
        self,
        task: str,
        payload: Mapping[str, Any],
        *,
        noise_share: float = 1.0,
        charge: bool = True,
    ) -> dict:
        """Answer one request. ``noise_share`` < 1 (distributed noise) and ``charge=False``
        are only for secure aggregation (``client.secure``), where the sum of all shares
        carries full σ and the charge is made when the masked input is sent."""
        if task not in self._handlers:
            raise BadRequest(f"unknown task {task!r}")
        if not 0 < noise_share <= 1:
            raise BadRequest(f"noise share must be in (0, 1], got {noise_share}")
        return self._handlers[task](payload, ReleaseMode(noise_share=noise_share, charge=charge))

    def _describe(self, payload: Mapping[str, Any], mode: ReleaseMode) -> dict:
        """Public feature declaration: names, log flags and histogram ranges (model space)."""
        log = np.asarray(self.log)
        lower = np.where(log, np.log1p(np.maximum(self.lower, 0)), self.lower)
        upper = np.where(log, np.log1p(np.maximum(self.upper, 0)), self.upper)
        return {
            "names": list(self.names),
            "log": log.astype(np.float64),
            "lower": lower,
            "upper": upper,
        }

    def _model_space(self) -> np.ndarray:
        x = self.features.copy()
        log = np.asarray(self.log)
        x[:, log] = np.log1p(np.maximum(x[:, log], 0.0))
        return x

    def _histograms(self, payload: Mapping[str, Any], mode: ReleaseMode) -> dict:
        edges = _array(payload, "edges", ndim=2)
        if edges.shape[0] != len(self.names) or edges.shape[1] < 2:
            raise BadRequest(
                f"'edges' has shape {edges.shape}, expected ({len(self.names)}, bins+1)"
            )
        if np.any(np.diff(edges, axis=1) <= 0):
            raise BadRequest("'edges' must increase along each feature")
        # One customer adds one count to one bin of each of the d histograms.
        mechanism = GaussianMechanism(
            noise_multiplier=_noise_multiplier(payload),
            sensitivities={"counts": float(np.sqrt(len(self.names)))},
        )
        counts = feature_histograms(self._model_space(), edges)
        return self._release(payload, mechanism, {"counts": counts}, mode)

    def _scaling(self, payload: Mapping[str, Any]) -> tuple[FeatureScaling, float]:
        """The request's scaling and the L2 bound of one transformed customer (the
        sensitivity of a sum). Every round sends the same scaling, so the last one built
        is reused when the checked arrays carry the same bytes (same bytes, same values)."""
        lower, upper, mean, scale = (
            _array(payload, name, ndim=1) for name in ("lower", "upper", "mean", "scale")
        )
        radius = float(payload["radius"])
        key = (lower.tobytes(), upper.tobytes(), mean.tobytes(), scale.tobytes(), radius)
        if key != self._scaling_key:
            scaling = FeatureScaling(
                names=self.names,
                log=self.log,
                lower=tuple(lower),
                upper=tuple(upper),
                mean=tuple(mean),
                scale=tuple(scale),
                radius=radius,
            )
            radius_bound = min(scaling.radius, scaling.box_radius())
            self._scaling_key, self._scaling_built = key, (scaling, radius_bound)
        return self._scaling_built

    def _transformed(self, scaling: FeatureScaling) -> np.ndarray:
        """The customers in standardized space; the scaling is the same every round."""
        if self._cached_scaling is not scaling and self._cached_scaling != scaling:
            self._cached_scaling, self._cached_z = scaling, scaling.transform(self.features)
        return self._cached_z

    def _square_norm(self, payload: Mapping[str, Any], mode: ReleaseMode) -> dict:
        """Σ‖z‖² over this merchant's customers: with the cluster statistics it gives the
        within-cluster cost, which choosing k needs. One customer adds ‖z‖² ≤ R²."""
        scaling, radius = self._scaling(payload)
        mechanism = GaussianMechanism(
            noise_multiplier=_noise_multiplier(payload), sensitivities={"square_norm": radius**2}
        )
        total = np.array([np.sum(self._transformed(scaling) ** 2)])
        return self._release(payload, mechanism, {"square_norm": total}, mode)

    def _cluster_stats(self, payload: Mapping[str, Any], mode: ReleaseMode) -> dict:
        scaling, radius = self._scaling(payload)
        centres = _array(payload, "centres", ndim=2)
        if centres.shape[1] != scaling.dim:
            raise BadRequest(f"'centres' has {centres.shape[1]} columns for {scaling.dim} features")
        # Every transformed vector has norm ≤ radius and joins exactly one cluster.
        share = float(payload["sums_share"])
        if not 0 < share < 1:
            raise BadRequest(f"'sums_share' must be in (0, 1), got {share}")
        mechanism = GaussianMechanism(
            noise_multiplier=_noise_multiplier(payload),
            sensitivities={"sums": radius, "counts": 1.0},
            shares={"sums": share, "counts": 1.0 - share},
        )
        sums, counts = cluster_statistics(self._transformed(scaling), centres)
        return self._release(payload, mechanism, {"sums": sums, "counts": counts}, mode)

    def _release(
        self,
        payload: Mapping[str, Any],
        mechanism: GaussianMechanism,
        values: dict,
        mode: ReleaseMode,
    ) -> dict:
        """Charge the ledger first; draw noise only once the charge is accepted."""
        if mode.charge:
            self.ledger.charge(mechanism.as_release(str(payload["release"])))
        # Distributed noise: this node adds a 1/n share of the variance; the secure sum
        # of n shares carries the full σ. Local noise: noise_share = 1.
        rng = self.rng_for(int(payload["request_id"]))
        if mode.noise_share == 1.0:  # z·√1 is z: the mechanism itself, not a rebuilt copy
            return mechanism.release(values, rng)
        scaled = GaussianMechanism(
            noise_multiplier=mechanism.noise_multiplier * np.sqrt(mode.noise_share),
            sensitivities=mechanism.sensitivities,
            shares=mechanism.shares,
        )
        return scaled.release(values, rng)


def _noise_multiplier(payload: Mapping[str, Any]) -> float:
    z = float(payload["noise_multiplier"])
    if not (z >= 0 and np.isfinite(z)):
        raise BadRequest(f"'noise_multiplier' must be finite and ≥ 0, got {z}")
    return z


def _array(payload: Mapping[str, Any], name: str, *, ndim: int) -> np.ndarray:
    value = payload.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != ndim:
        raise BadRequest(f"field {name!r} must be a {ndim}-d array")
    if not np.all(np.isfinite(value)):
        raise BadRequest(f"field {name!r} has non-finite values")
    return value.astype(np.float64)
