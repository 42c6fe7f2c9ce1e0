"""The map from customer features to the clipped, standardized space K-means runs in.

Every statistic a client releases is computed on ``FeatureScaling.transform(x)``. Its
``radius`` is the L2 bound of one customer's transformed vector, so it is also the
L2 sensitivity of any per-cluster sum: clipping and sensitivity live in one object.
All fields are public (derived from DP releases or the feature schema), never from
raw data directly. A bound may be infinite (a side the schema leaves unknown is not clipped;
displacement clipping bounds the releases instead), and is written as ``null`` in JSON.
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
        lower, upper = np.asarray(self.lower, float), np.asarray(self.upper, float)
        if np.any(np.isnan(lower) | np.isnan(upper)) or np.any(upper < lower):
            raise ValueError("FeatureScaling: a bound is NaN or an upper bound below its lower")
        if np.any(lower == np.inf) or np.any(upper == -np.inf):
            raise ValueError("FeatureScaling: a lower bound of +inf or an upper bound of -inf")
        if not np.all(np.isfinite(self.mean)) or not np.all(np.isfinite(self.scale)):
            raise ValueError("FeatureScaling.mean and scale must be finite")
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
        """Largest norm a box-clipped standardized vector can have (inf if a side is open)."""
        lo, hi = self.box()
        return float(np.sqrt(np.sum(np.maximum(np.abs(lo), np.abs(hi)) ** 2)))

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "log": list(self.log),
            "lower": [_json_bound(v) for v in self.lower],
            "upper": [_json_bound(v) for v in self.upper],
            "mean": list(self.mean),
            "scale": list(self.scale),
            "radius": self.radius if np.isfinite(self.radius) else "inf",
        }

    def to_payload(self) -> dict:
        """The scaling as a request carries it to the merchants (no ``radius``: a request
        that clips names its own radius, and the merchant clips to it)."""
        return {
            "lower": np.asarray(self.lower, dtype=np.float64),
            "upper": np.asarray(self.upper, dtype=np.float64),
            "mean": np.asarray(self.mean, dtype=np.float64),
            "scale": np.asarray(self.scale, dtype=np.float64),
        }

    @classmethod
    def from_payload(
        cls, payload: Mapping, *, names: tuple[str, ...], log: tuple[bool, ...]
    ) -> FeatureScaling:
        """The scaling a request carries, for the merchant's own feature names and log flags
        (ValueError if any part is missing, NaN, infinite where it may not be, or
        inconsistent)."""
        parts = {}
        for name in ("lower", "upper", "mean", "scale"):
            value = payload.get(name)
            if (
                not isinstance(value, np.ndarray)
                or value.ndim != 1
                or value.dtype.kind not in "fiu"
            ):
                raise ValueError(f"field {name!r} must be a numeric 1-d array")
            open_side = name in ("lower", "upper")  # a bound may be ±inf, never NaN
            if not np.all(~np.isnan(value) if open_side else np.isfinite(value)):
                raise ValueError(f"field {name!r} has non-finite values")
            parts[name] = tuple(float(v) for v in value)
        return cls(names=names, log=log, **parts)

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureScaling:
        return cls(
            names=tuple(data["names"]),
            log=tuple(bool(v) for v in data["log"]),
            lower=tuple(-np.inf if v is None else float(v) for v in data["lower"]),
            upper=tuple(np.inf if v is None else float(v) for v in data["upper"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            radius=float(data.get("radius", "inf")),
        )


def unit_box(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-width of a finite clip box."""
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    return (lower + upper) / 2, np.maximum((upper - lower) / 2, 1e-12)


def to_unit(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Values clipped to the box [lower, upper] and mapped onto [-1, 1]: u = (clip(x) − c)/h,
    so one row has ‖u‖ ≤ √d whatever it was (the sensitivity of the moments and profiles)."""
    centre, half = unit_box(lower, upper)
    return (np.clip(values, lower, upper) - centre) / half


def _json_bound(value: float) -> float | None:
    """A bound as JSON holds it: an open side (±inf) is ``null``."""
    return float(value) if np.isfinite(value) else None
