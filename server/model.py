"""The published segmentation model: centres, scaling, noisy sizes, DP profiles, privacy.

Everything in it is post-processing of DP releases, so it can be shared with every
merchant; each merchant then assigns (and recommends to) its own customers locally.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fedseg.privacy.protocol.schema import FeatureSchema, schema_from_dict
from fedseg.privacy.published.segments import ModelError, PublishedSegments, nearest_centre
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server.naming import segment_names

UNNAMED = "(unnamed: profile mostly noise)"


@dataclass(frozen=True)
class SegmentModel:
    scaling: FeatureScaling
    centres_standardized: np.ndarray  # (k, d)
    segment_sizes: np.ndarray  # noisy customer counts from the last round
    privacy: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)  # e.g. the recommender

    @property
    def k(self) -> int:
        return len(self.centres_standardized)

    @property
    def features(self) -> tuple[str, ...]:
        return self.scaling.names

    @property
    def schema(self) -> FeatureSchema | None:
        """The run's feature schema (None for models written before schemas)."""
        data = self.extras.get("schema")
        return None if data is None else schema_from_dict(data, source="model.json: schema")

    @property
    def centroids(self) -> np.ndarray:
        """Centres in original units (log features mapped back through expm1)."""
        return self.scaling.inverse(self.centres_standardized)

    @property
    def names(self) -> list[str]:
        """Descriptive names; a segment whose profile is mostly noise stays unnamed."""
        names = segment_names(self.features, self.centres_standardized)
        nameable = self.extras.get("noise", {}).get("nameable")
        if nameable is None or len(nameable) != self.k:
            return names
        return [n if ok else UNNAMED for n, ok in zip(names, nameable, strict=True)]

    @property
    def profile_values(self) -> np.ndarray:
        """(k, d) per-segment values in original units: the DP means of the members when the
        run released profiles, else the centres mapped back."""
        means = self.extras.get("profile_means")
        if means is None or np.shape(means) != self.centres_standardized.shape:
            return self.centroids
        return np.asarray(means, dtype=np.float64)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Segment of each customer (rows in original units), computed where the data is."""
        return nearest_centre(self.scaling.transform(features), self.centres_standardized)

    def profiles(self) -> list[dict[str, Any]]:
        """One readable row per segment: name, noisy size, profile in original units."""
        rows = []
        for i, (name, centre) in enumerate(zip(self.names, self.profile_values, strict=True)):
            row = {
                "segment": i + 1,
                "name": name,
                "size": int(max(round(self.segment_sizes[i]), 0)),
            }
            row.update({f: float(v) for f, v in zip(self.features, centre, strict=True)})
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "features": list(self.features),
            "centroids": self.centroids.tolist(),
            "centroids_standardized": self.centres_standardized.tolist(),
            "scaler": self.scaling.to_dict(),
            "segment_sizes": [float(s) for s in self.segment_sizes],
            "segment_names": self.names,
            "profiles": self.profiles(),
            "privacy": self.privacy,
            "history": self.history,
            **self.extras,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentModel:
        published = PublishedSegments.from_dict(data)  # the merchants' reader checks it first
        known = {
            "k",
            "features",
            "centroids",
            "centroids_standardized",
            "scaler",
            "segment_sizes",
            "segment_names",
            "profiles",
            "privacy",
            "history",
        }
        return cls(
            scaling=published.scaling,
            centres_standardized=published.centres,
            segment_sizes=np.asarray(data["segment_sizes"], dtype=np.float64),
            privacy=data.get("privacy", {}),
            history=data.get("history", []),
            extras={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def load(cls, path: str | Path) -> SegmentModel:
        _, data = PublishedSegments.load(path)
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: not a fedseg model.json ({exc})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
