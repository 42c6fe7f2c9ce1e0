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

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.privacy import releases
from fedseg.privacy.published.recommender import RecommenderModel
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server.aggregation import ReplySpec
from fedseg.server.recommender.content import catalogue_attributes, choose_candidate
from fedseg.server.recommender.ease import choose_items, fit_recommender
from fedseg.server.rounds import Rounds

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
    """The recommender rounds over the merchants that took part in the segmentation."""

    rounds: Rounds
    content_check: dict | None = None  # the check's candidates and noisy gains, once run

    def fit(
        self, scaling: FeatureScaling, centres: np.ndarray, catalogue: pd.DataFrame
    ) -> RecommenderModel:
        """All rounds; the model's item indices refer to rows of ``catalogue``."""
        k, z = len(centres), self.rounds.noise
        segmentation = segmentation_payload(scaling, centres, catalogue)
        mechanism = releases.popularity_mechanism(z[releases.POPULARITY])
        spec = ReplySpec(shapes={"overall": (len(catalogue),)}, sigmas={})
        popularity = self.rounds.gaussian_round(
            "item_popularity", releases.POPULARITY, segmentation, mechanism, spec
        )
        items = choose_items(
            popularity.sums["overall"],
            sigma=popularity.noise_sigmas["overall"],
            max_items=MAX_GRAM_ITEMS,
        )
        size = len(items) + k
        request = dict(
            segmentation, item_index=items.astype(np.int64), segment_weight=SEGMENT_WEIGHT
        )
        mechanism = releases.gram_mechanism(z[releases.GRAM])
        spec = ReplySpec(shapes={"gram": (size * (size + 1) // 2,)}, sigmas={})
        gram = self.rounds.gaussian_round("item_gram", releases.GRAM, request, mechanism, spec)
        checked = releases.CONTENT_CHECK in z
        model = fit_recommender(
            {
                "overall": popularity.sums["overall"],
                "gram": releases.gram_from_triangle(gram.sums["gram"], size),
            },
            item_index=items,
            gram_sigma=gram.noise_sigmas["gram"],
            n_segments=k,
            segment_weight=SEGMENT_WEIGHT,
            popularity_weight=POPULARITY_WEIGHT,
            attributes=catalogue_attributes(catalogue) if checked else None,
            content_weight=0.0,
        )
        return self._check_content(segmentation, model) if model.content is not None else model

    def _check_content(self, segmentation: dict, model: RecommenderModel) -> RecommenderModel:
        """Round 3: the merchants' noisy gain in hits per candidate scorer picks the scorer."""
        candidates = scorer_candidates(model)
        request = dict(segmentation, **model.to_arrays(), candidates=candidates)
        mechanism = releases.content_check_mechanism(
            self.rounds.noise[releases.CONTENT_CHECK], candidates=len(candidates)
        )
        bound = mechanism.sensitivities["gain"]
        spec = ReplySpec(shapes={"gain": (len(candidates),)}, sigmas={}, max_norm=bound)
        gains = self.rounds.gaussian_round(
            "content_check", releases.CONTENT_CHECK, request, mechanism, spec
        ).sums["gain"]
        self.content_check = {"candidates": candidates.tolist(), "noisy_gain": gains.tolist()}
        content_weight, lift_strength = choose_candidate(gains, candidates)
        return replace(model, content_weight=content_weight, lift_strength=lift_strength)


def segmentation_payload(
    scaling: FeatureScaling, centres: np.ndarray, catalogue: pd.DataFrame
) -> dict:
    """What every recommender request carries: the published segmentation (merchants assign
    their own customers' segments) and the public catalogue's item ids."""
    return {
        **scaling.to_payload(),
        "centres": np.asarray(centres, dtype=np.float64),
        "items": catalogue["item_id"].tolist(),
    }


def scorer_candidates(model: RecommenderModel) -> np.ndarray:
    """SCORER_CANDIDATES the model can score: segment lift only when it has segments."""
    usable = SCORER_CANDIDATES[:, 1] == 0 if model.lift is None else slice(None)
    return SCORER_CANDIDATES[usable]
