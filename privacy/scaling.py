"""The map from customer features to the clipped, standardized space K-means runs in.

Every statistic a client releases is computed on ``FeatureScaling.transform(x)``. Its
``radius`` is the L2 bound of one customer's transformed vector, so it is also the
L2 sensitivity of any per-cluster sum: clipping and sensitivity live in one object.
All fields are public (derived from DP histograms or the feature specs), never from
raw data directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureScaling:
    """log1p (per flag) → clip to [lower, upper] → standardize → L2-clip to ``radius``."""

    names: tuple[str, ...]
    log: tuple[bool, ...]
    lower: tuple[float, ...]  # in the log1p space where ``log`` is set
    upper: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    radius: float = float("inf")

    def __post_init__(self) -> None:
        d = len(self.names)
        for field in ("log", "lower", "upper", "mean", "scale"):
            if len(getattr(self, field)) != d:
                raise ValueError(
                    f"FeatureScaling.{field} has {len(getattr(self, field))} "
                    f"entries for {d} features"
                )
        if np.any(np.asarray(self.upper) < np.asarray(self.lower)):
            raise ValueError("FeatureScaling: an upper bound is below its lower bound")
        if np.any(np.asarray(self.scale) <= 0):
            raise ValueError("FeatureScaling.scale must be positive")
        if not self.radius > 0:
            raise ValueError("FeatureScaling.radius must be positive")

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_model_space(self, x: np.ndarray) -> np.ndarray:
        """log1p where flagged, then clip to the public bounds (unstandardized)."""
        x = np.asarray(x, dtype=np.float64)
        log = np.asarray(self.log)
        out = x.copy()
        out[:, log] = np.log1p(np.maximum(x[:, log], 0.0))
        return np.clip(out, self.lower, self.upper)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Features in original units → clipped standardized vectors (norm ≤ radius)."""
        z = (self.to_model_space(x) - np.asarray(self.mean)) / np.asarray(self.scale)
        if np.isfinite(self.radius):
            norms = np.linalg.norm(z, axis=1, keepdims=True)
            z = z * np.minimum(1.0, self.radius / np.maximum(norms, 1e-300))
        return z

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Standardized points (e.g. centres) → original units."""
        x = np.asarray(z, dtype=np.float64) * np.asarray(self.scale) + np.asarray(self.mean)
        log = np.asarray(self.log)
        x[:, log] = np.expm1(x[:, log])
        return x

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The clip box in standardized space; centres are kept inside it."""
        lo = (np.asarray(self.lower) - self.mean) / np.asarray(self.scale)
        hi = (np.asarray(self.upper) - self.mean) / np.asarray(self.scale)
        return lo, hi

    def box_radius(self) -> float:
        """Largest norm a box-clipped standardized vector can have."""
        lo, hi = self.box()
        return float(np.sqrt(np.sum(np.maximum(np.abs(lo), np.abs(hi)) ** 2)))

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "log": list(self.log),
            "lower": list(self.lower),
            "upper": list(self.upper),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "radius": self.radius if np.isfinite(self.radius) else "inf",
        }

    def to_payload(self) -> dict:
        """The scaling as a request carries it to the merchants (arrays and the radius)."""
        return {
            "lower": np.asarray(self.lower, dtype=np.float64),
            "upper": np.asarray(self.upper, dtype=np.float64),
            "mean": np.asarray(self.mean, dtype=np.float64),
            "scale": np.asarray(self.scale, dtype=np.float64),
            "radius": float(self.radius),
        }

    @classmethod
    def from_payload(
        cls, payload: Mapping, *, names: tuple[str, ...], log: tuple[bool, ...]
    ) -> FeatureScaling:
        """The scaling a request carries, for the merchant's own feature names and log flags
        (ValueError if any part is missing, not finite or inconsistent)."""
        parts = {}
        for name in ("lower", "upper", "mean", "scale"):
            value = payload.get(name)
            if (
                not isinstance(value, np.ndarray)
                or value.ndim != 1
                or value.dtype.kind not in "fiu"
            ):
                raise ValueError(f"field {name!r} must be a numeric 1-d array")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"field {name!r} has non-finite values")
            parts[name] = tuple(float(v) for v in value)
        try:
            radius = float(payload["radius"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("field 'radius' must be a number") from None
        return cls(names=names, log=log, radius=radius, **parts)

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureScaling:
        return cls(
            names=tuple(data["names"]),
            log=tuple(bool(v) for v in data["log"]),
            lower=tuple(float(v) for v in data["lower"]),
            upper=tuple(float(v) for v in data["upper"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            radius=float(data.get("radius", "inf")),
        )
