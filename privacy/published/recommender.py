"""The published DP-EASE recommender: factors, popularity prior, optional content and
segment-lift parts, and how a merchant scores its customers with them (server/recommender/
ease.py fits it; docs/recommender.md).

For an item j outside a customer's history the EASE score is
    s_j = (x V diag(f) V_jᵀ) / (1 - Σ_k V_jk² f_k)
with (V, f) the eigen-truncated Gram's vectors and shrinkage: two thin matrix products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fedseg.privacy.published.content import ContentModel
from fedseg.privacy.published.lift import SegmentLift
from fedseg.privacy.published.prior import PopularityPrior

TIE_BREAK = 1e-3


@dataclass(frozen=True)
class RecommenderModel:
    """DP-EASE factors over `item_index` plus a popularity prior over the whole catalogue.

    Optional parts, scored only when chosen (by the merchants' DP check): content scoring
    added to EASE (`content_weight` > 0), or instead of EASE, per-segment popularity
    personalized by attribute mix (`lift_strength` > 0, privacy/published/lift.py).
    """

    item_index: np.ndarray
    vectors: np.ndarray
    shrinkage: np.ndarray
    prior: PopularityPrior
    popularity_weight: float
    n_segments: int = 0
    segment_weight: float = 1.0
    content: ContentModel | None = None
    content_weight: float = 0.0
    lift: SegmentLift | None = None
    lift_strength: float = 0.0

    def __post_init__(self) -> None:
        n, k = self.vectors.shape
        if len(self.item_index) + self.n_segments != n or len(self.shrinkage) != k:
            raise ValueError("item_index, vectors and shrinkage sizes do not match")
        if min(self.popularity_weight, self.content_weight, self.lift_strength) < 0:
            raise ValueError("popularity_weight, content_weight and lift_strength must be >= 0")
        if self.lift_strength > 0 and (self.lift is None or self.content is None):
            raise ValueError("lift_strength > 0 needs the lift and content parts")
        if self.content is not None and self.content.n_items != self.n_items:
            raise ValueError("the content model and the popularity prior cover different items")

    @property
    def n_items(self) -> int:
        return self.prior.n_items

    def scores(self, histories: Sequence[np.ndarray], segments: np.ndarray) -> np.ndarray:
        """Scores (customers x catalogue): EASE scaled to [-1, 1] per customer + weighted prior,
        plus content_weight × the content affinity (in [0, 1]) when the model has one.

        Items in a customer's own history get arbitrary scores; `recommend` masks them.
        """
        if self.lift_strength > 0:
            return self.lift.scores(histories, segments, self.content, strength=self.lift_strength)
        lookup = np.full(self.n_items, -1, dtype=np.int64)
        lookup[self.item_index] = np.arange(len(self.item_index))
        n = len(self.item_index)
        x = np.zeros((len(histories), n + self.n_segments))
        for row, history in enumerate(histories):
            columns = lookup[np.asarray(history, dtype=np.int64)]
            x[row, columns[columns >= 0]] = 1.0
        if self.n_segments:
            rows = np.arange(len(histories))
            x[rows, n + np.asarray(segments, dtype=np.int64)] = self.segment_weight
        items = self.vectors[:n]
        leverage = 1.0 - (items**2) @ self.shrinkage
        ease = ((x @ self.vectors) * self.shrinkage) @ items.T / np.maximum(leverage, 1e-12)
        ease /= np.abs(ease).max(axis=1, keepdims=True, initial=0.0) + 1e-12
        # The prior ranks the items EASE knows nothing about (outside item_index); inside, it
        # only breaks ties, since the segment columns already give EASE its intercepts.
        out = self.popularity_weight * self.prior.scores(np.asarray(segments))
        out[:, self.item_index] = ease + TIE_BREAK * out[:, self.item_index]
        if self.content is not None and self.content_weight > 0:
            out += self.content_weight * self.content.affinity(histories)
        return out

    def recommend(self, history_items: np.ndarray, segment: int, n: int = 10) -> np.ndarray:
        """The customer's n best items not already in their history, best first."""
        scores = self.scores([np.asarray(history_items)], np.array([segment]))[0]
        scores[np.asarray(history_items, dtype=np.int64)] = -np.inf
        return np.argsort(-scores, kind="stable")[:n]

    def to_dict(self) -> dict:
        """JSON-ready form for model.json."""
        return {
            "kind": "dp-ease",
            "item_index": self.item_index.tolist(),
            "vectors": self.vectors.tolist(),
            "shrinkage": self.shrinkage.tolist(),
            "popularity_weight": self.popularity_weight,
            "n_segments": self.n_segments,
            "segment_weight": self.segment_weight,
            "prior": self.prior.to_dict(),
            "content": None if self.content is None else self.content.to_dict(),
            "content_weight": self.content_weight,
            "lift": None if self.lift is None else self.lift.segment_items.tolist(),
            "lift_strength": self.lift_strength,
        }

    def to_arrays(self) -> dict[str, np.ndarray | float | int]:
        """Flat message form (arrays travel raw): what a merchant needs to score its customers.

        The overall prior and the content part only; per-segment popularity is not sent."""
        arrays: dict[str, np.ndarray | float | int] = {
            "item_index": self.item_index,
            "vectors": self.vectors,
            "shrinkage": self.shrinkage,
            "prior_overall": self.prior.overall,
            "popularity_weight": self.popularity_weight,
            "n_segments": self.n_segments,
            "segment_weight": self.segment_weight,
        }
        if self.content is not None:
            arrays["attribute_names"] = list(self.content.names)
            arrays["attribute_indicators"] = self.content.indicators
            arrays["attribute_weights"] = self.content.weights
        if self.lift is not None:
            arrays["segment_items"] = self.lift.segment_items
        return arrays

    @classmethod
    def from_arrays(cls, data: Mapping[str, Any]) -> RecommenderModel:
        """Inverse of to_arrays; missing or malformed fields raise ValueError naming them."""
        arrays = {}
        for name, ndim in (("item_index", 1), ("vectors", 2), ("shrinkage", 1)):
            arrays[name] = checked_array(data, name, ndim=ndim)
        arrays["prior_overall"] = checked_array(data, "prior_overall", ndim=1)
        content = None
        if "attribute_indicators" in data:
            indicators = checked_array(data, "attribute_indicators", ndim=2)
            names = tuple(str(name) for name in data.get("attribute_names", []))
            weights = checked_array(data, "attribute_weights", ndim=1)
            content = ContentModel(names, indicators, weights)
        lift = None
        if "segment_items" in data:
            lift = SegmentLift(checked_array(data, "segment_items", ndim=2))
        return cls(
            arrays["item_index"].astype(np.int64),
            arrays["vectors"],
            arrays["shrinkage"],
            PopularityPrior(arrays["prior_overall"]),
            float(data.get("popularity_weight", 0.0)),
            int(data.get("n_segments", 0)),
            float(data.get("segment_weight", 1.0)),
            content,
            lift=lift,
        )

    @classmethod
    def from_dict(cls, data: dict) -> RecommenderModel:
        """Inverse of to_dict; a missing field raises ValueError naming it."""
        missing = {"item_index", "vectors", "shrinkage", "popularity_weight", "prior"} - set(data)
        if missing:
            raise ValueError(f"recommender model has no field {sorted(missing)[0]!r}")
        index = np.asarray(data["item_index"], dtype=np.int64)
        n_segments = int(data.get("n_segments", 0))
        vectors = np.asarray(data["vectors"], dtype=np.float64)
        content = data.get("content")
        return cls(
            index,
            vectors.reshape(len(index) + n_segments, -1),
            np.asarray(data["shrinkage"], dtype=np.float64),
            PopularityPrior.from_dict(data["prior"]),
            float(data["popularity_weight"]),
            n_segments,
            float(data.get("segment_weight", 1.0)),
            None if content is None else ContentModel.from_dict(content),
            float(data.get("content_weight", 0.0)),
            None if data.get("lift") is None else SegmentLift(np.asarray(data["lift"], float)),
            float(data.get("lift_strength", 0.0)),
        )


def checked_array(summed: Mapping[str, Any], part: str, *, ndim: int) -> np.ndarray:
    """``summed[part]`` as a finite float array of ``ndim`` dimensions, else ValueError."""
    if part not in summed:
        raise ValueError(f"field {part!r} is missing")
    array = np.asarray(summed[part], dtype=np.float64)
    if array.ndim != ndim or not np.all(np.isfinite(array)):
        raise ValueError(f"{part!r} must be a finite {ndim}-d array, got shape {array.shape}")
    return array


def load_recommender(published: Mapping[str, Any]):
    """The published recommender of model.json, whichever kind it is (the DP-SGD one loads
    torch, so only when asked for)."""
    if published.get("kind") == "dp-sgd":
        from fedseg.privacy.published.neural import NeuralRecommender

        return NeuralRecommender.from_dict(dict(published))
    return RecommenderModel.from_dict(dict(published))
