"""The server's recommender rounds (DP-EASE, docs/recommender.md), after the segmentation.

Round 1 asks every merchant for its noisy unit-norm item popularity; the server keeps the
items whose summed popularity stands clear of the noise (`choose_items`). Round 2 asks for
the noisy Gram over those items plus one pseudo-item per segment; the server fits EASE
on the sum (`fit_recommender`). When the catalogue has item attributes, round 3 sends the
model back and asks each merchant how many more held-back items each candidate scorer
(EASE + content, or per-segment popularity lifted by the customer's attribute mix) would hit
than EASE alone (client/recommender/check.py); the server keeps the best candidate if its
noisy gain is positive, else EASE alone. Each request carries the published segmentation (scaler +
centres), so merchants assign their own customers' segments locally, and the public item
catalogue. Written against ``Transport`` like ``SegmentationRun``: every noisy request is
charged to the server's ledger before it is sent (unless the aggregator charges itself,
as secure aggregation does once the masked inputs are in).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server.aggregation import Aggregate, ReplySpec
from fedseg.server.config import SegmentationConfig
from fedseg.server.recommender.content import catalogue_attributes, choose_candidate
from fedseg.server.recommender.ease import choose_items, fit_recommender
from fedseg.server.recommender.model import RecommenderModel
from fedseg.server.segmentation import Aggregator, noisy_round
from fedseg.server.transport import Transport

POPULARITY_RELEASE = "recommender_item_popularity"
GRAM_RELEASE = "recommender_gram"
CONTENT_RELEASE = "recommender_content_check"
# As benchmarked (benchmarks/recommender.py, docs/recommender.md).
MAX_GRAM_ITEMS = 1000
SEGMENT_WEIGHT = 1.0
POPULARITY_WEIGHT = 0.3
# Scorers the merchants' check compares with EASE alone: rows (content_weight, lift_strength).
SCORER_CANDIDATES = np.array([[0.3, 0.0], [0.0, 3.0], [0.0, 10.0], [0.0, 30.0]])


class CatalogueError(ValueError):
    """The item catalogue the recommender needs is missing or unusable."""


def read_catalogue(path: str | Path) -> pd.DataFrame:
    """The catalogue CSV, rows in file order, ``item_id`` as str; other columns (category,
    genres, price, price_tier, year) are the public item attributes of content scoring."""
    if not str(path):
        raise CatalogueError("the recommender needs an item catalogue (run_config 'items')")
    try:
        table = pd.read_csv(path, dtype={"item_id": str}, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise CatalogueError(f"{path}: cannot read the item catalogue ({exc})") from None
    if "item_id" not in table.columns:
        raise CatalogueError(f"{path}: the item catalogue has no column 'item_id'")
    ids = table["item_id"].fillna("").astype(str).str.strip()
    empty = np.flatnonzero((ids == "").to_numpy())
    if len(empty):
        raise CatalogueError(f"{path}: row {int(empty[0]) + 2}: empty item_id")
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise CatalogueError(f"{path}: item_id {repeated.iloc[0]!r} appears twice")
    if not len(ids):
        raise CatalogueError(f"{path}: the item catalogue is empty")
    return table.assign(item_id=ids)


@dataclass
class RecommenderRun:
    """The two recommender rounds over the merchants that took part in the segmentation."""

    transport: Transport
    cfg: SegmentationConfig
    ledger: PrivacyLedger
    noise_multipliers: dict[str, float]  # from noise_plan: both recommender releases
    aggregate: Aggregator | None = None  # secure aggregation; plain sums otherwise
    excluded: set[int] = field(default_factory=set)
    request_ids: itertools.count = field(default_factory=itertools.count)
    history: list[dict] = field(default_factory=list)
    content_check: dict | None = None  # the check's candidates and noisy gains, once run

    def fit(
        self, scaling: FeatureScaling, centres: np.ndarray, catalogue: pd.DataFrame
    ) -> RecommenderModel:
        """All rounds; the model's item indices refer to rows of ``catalogue``."""
        k = len(centres)
        segmentation = segmentation_payload(scaling, centres, catalogue)
        z_pop = self.noise_multipliers[POPULARITY_RELEASE]
        spec = ReplySpec(shapes={"overall": (len(catalogue),)}, sigmas={"overall": z_pop})
        popularity = self._noisy_round(
            "item_popularity", POPULARITY_RELEASE, segmentation, z_pop, spec
        )
        items = choose_items(
            popularity.sums["overall"],
            sigma=z_pop * self._spread(popularity),
            max_items=MAX_GRAM_ITEMS,
        )
        size = len(items) + k
        z_gram = self.noise_multipliers[GRAM_RELEASE]
        request = dict(
            segmentation,
            item_index=items.astype(np.int64),
            segment_weight=SEGMENT_WEIGHT,
            normalize=self.cfg.private,  # exact co-occurrence counts only without noise
        )
        spec = ReplySpec(shapes={"gram": (size * (size + 1) // 2,)}, sigmas={"gram": z_gram})
        gram = self._noisy_round("item_gram", GRAM_RELEASE, request, z_gram, spec)
        checked = CONTENT_RELEASE in self.noise_multipliers
        model = fit_recommender(
            {"overall": popularity.sums["overall"], "gram": symmetric(gram.sums["gram"], size)},
            item_index=items,
            gram_sigma=z_gram * self._spread(gram),
            n_segments=k,
            segment_weight=SEGMENT_WEIGHT,
            popularity_weight=POPULARITY_WEIGHT,
            attributes=catalogue_attributes(catalogue) if checked else None,
            content_weight=0.0,
        )
        return self._check_content(segmentation, model) if model.content is not None else model

    def _check_content(self, segmentation: dict, model: RecommenderModel) -> RecommenderModel:
        """Round 3: the merchants' noisy gain in hits per candidate scorer picks the scorer."""
        z = self.noise_multipliers[CONTENT_RELEASE]
        candidates = scorer_candidates(model)
        request = dict(segmentation, **model.to_arrays(), candidates=candidates)
        bound = math.sqrt(len(candidates))
        spec = ReplySpec(
            shapes={"gain": (len(candidates),)}, sigmas={"gain": z * bound}, max_norm=bound
        )
        gains = self._noisy_round("content_check", CONTENT_RELEASE, request, z, spec).sums["gain"]
        self.content_check = {"candidates": candidates.tolist(), "noisy_gain": gains.tolist()}
        content_weight, lift_strength = choose_candidate(gains, candidates)
        return replace(model, content_weight=content_weight, lift_strength=lift_strength)

    def _spread(self, agg: Aggregate) -> float:
        """Std of the summed noise over σ: one σ with distributed noise, else √contributors."""
        copies = 1 if self.cfg.noise == "distributed" else len(agg.log.contributors)
        return math.sqrt(max(copies, 1))

    def _noisy_round(
        self, task: str, release: str, payload: dict, z: float, spec: ReplySpec
    ) -> Aggregate:
        return noisy_round(self, task, release, payload, z, spec)


def segmentation_payload(
    scaling: FeatureScaling, centres: np.ndarray, catalogue: pd.DataFrame
) -> dict:
    """What every recommender request carries: the published segmentation (merchants assign
    their own customers' segments) and the public catalogue's item ids."""
    return {
        "lower": np.asarray(scaling.lower, dtype=np.float64),
        "upper": np.asarray(scaling.upper, dtype=np.float64),
        "mean": np.asarray(scaling.mean, dtype=np.float64),
        "scale": np.asarray(scaling.scale, dtype=np.float64),
        "radius": float(scaling.radius),
        "centres": np.asarray(centres, dtype=np.float64),
        "items": catalogue["item_id"].tolist(),
    }


def scorer_candidates(model: RecommenderModel) -> np.ndarray:
    """SCORER_CANDIDATES the model can score: segment lift only when it has segments."""
    usable = SCORER_CANDIDATES[:, 1] == 0 if model.lift is None else slice(None)
    return SCORER_CANDIDATES[usable]


def symmetric(upper: np.ndarray, size: int) -> np.ndarray:
    """The symmetric matrix whose upper triangle (row-major, diagonal included) is ``upper``."""
    matrix = np.zeros((size, size))
    matrix[np.triu_indices(size)] = upper
    return matrix + np.triu(matrix, 1).T
