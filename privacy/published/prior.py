"""The popularity prior of DP-EASE: overall (and per-segment) DP item popularity.

It ranks items outside the Gram's item set, breaks ties for customers whose history
touches none of the Gram's items, and carries the model when noise leaves EASE little.
Built from the `popularity_statistics` release only (post-processing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PopularityPrior:
    """Per-item scores in [0, 1]: overall popularity + segment_weight × segment popularity."""

    overall: np.ndarray
    segments: np.ndarray | None = None
    segment_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.overall.ndim != 1:
            raise ValueError("overall popularity must be 1-d")
        if self.segments is not None and self.segments.shape[1:] != self.overall.shape:
            raise ValueError("segment popularity must be (segments x items)")

    @property
    def n_items(self) -> int:
        return len(self.overall)

    @classmethod
    def from_release(cls, summed: dict[str, np.ndarray]) -> PopularityPrior:
        """Scale the summed noisy release to [0, 1] per row (negative noise clipped to 0)."""
        if "overall" not in summed:
            raise ValueError("aggregate has no 'overall' part")
        overall = _unit_rows(np.asarray(summed["overall"], dtype=np.float64)[None, :])[0]
        segments = summed.get("segments")
        if segments is not None:
            segments = _unit_rows(np.asarray(segments, dtype=np.float64))
        return cls(overall, segments)

    def scores(self, segments: np.ndarray) -> np.ndarray:
        """(customers x items) prior for customers of the given segments."""
        out = np.repeat(self.overall[None, :], len(segments), axis=0)
        if self.segments is not None:
            out += self.segment_weight * self.segments[np.asarray(segments, dtype=np.int64)]
        return out

    def to_dict(self) -> dict:
        return {
            "overall": self.overall.tolist(),
            "segments": None if self.segments is None else self.segments.tolist(),
            "segment_weight": self.segment_weight,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PopularityPrior:
        segments = data.get("segments")
        return cls(
            np.asarray(data["overall"], dtype=np.float64),
            None if segments is None else np.asarray(segments, dtype=np.float64),
            float(data.get("segment_weight", 0.5)),
        )


def _unit_rows(values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ValueError("popularity release contains NaN or inf")
    clipped = np.clip(values, 0.0, None)
    return clipped / np.maximum(clipped.max(axis=1, keepdims=True), 1e-12)
