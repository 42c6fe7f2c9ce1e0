"""A merchant's answers to the recommender rounds (DP-EASE, docs/recommender.md).

Each request carries the published segmentation (scaler + centres) and the public item
catalogue; the merchant assigns its own customers' segments locally and builds their item
histories. Each handler only decides how to answer — the mechanism from privacy/releases.py
with the planned noise multiplier, and the raw statistic — and the node's one release path
charges, computes and noises (client/node.py). Items a customer has that the catalogue does
not list are left out of every statistic, never an error: whether the merchant holds an item
must not depend on how the server wrote its catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fedseg.client.node import Answer, BadRequest, centres_field
from fedseg.client.recommender.check import content_gain
from fedseg.client.recommender.gram import item_gram, item_popularity
from fedseg.client.recommender.histories import CustomerHistories, build_histories
from fedseg.privacy import releases
from fedseg.privacy.accounting import Release
from fedseg.privacy.published.segments import nearest_centre

if TYPE_CHECKING:
    from fedseg.client.node import MerchantNode


class RecommenderRequestError(BadRequest):
    """A recommender request or this merchant's data cannot give a release; nothing left."""


@dataclass
class RecommenderTasks:
    """Item histories of one merchant's customers, loaded on the first recommender request.

    `customer_ids` are the (pseudonymized) ids of the node's feature rows, in order;
    `load_events` returns the merchant's clean events table (None for a features table).
    `holdout_last` (simulations only, for leave-last-out evaluation): every customer's
    last item is dropped before anything is released, so the evaluator's held-out item
    never influenced the model.
    """

    customer_ids: Sequence[str]
    load_events: Callable[[], pd.DataFrame | None]
    holdout_last: bool = False
    _events: pd.DataFrame | None = field(default=None, repr=False)
    _cache: tuple[bytes, CustomerHistories] | None = field(default=None, repr=False)

    def item_popularity(
        self, node: MerchantNode, payload: Mapping[str, Any], planned: Release
    ) -> Answer:
        """Round 1: noisy unit-norm item popularity {"overall": (n_items,)}."""
        mechanism = releases.popularity_mechanism(planned.noise_multiplier)
        n_items = len(_catalogue(payload))

        def compute(rng: np.random.Generator) -> dict[str, np.ndarray]:
            return item_popularity(self._histories(node, payload), n_items=n_items)

        return Answer(mechanism.as_release(planned.name), compute, mechanism)

    def item_gram(self, node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
        """Round 2: the noisy Gram over `item_index` + segment columns, as its triangle."""
        n_items, n_segments = len(_catalogue(payload)), len(centres_field(payload, node.schema.dim))
        item_index = payload.get("item_index")
        if not isinstance(item_index, np.ndarray) or item_index.ndim != 1 or not len(item_index):
            raise RecommenderRequestError("field 'item_index' must be a non-empty 1-d array")
        item_index = item_index.astype(np.int64)
        if item_index.min() < 0 or item_index.max() >= n_items:
            raise RecommenderRequestError("field 'item_index' points outside the catalogue")
        weight = float(payload.get("segment_weight", 1.0))
        if not weight > 0:
            raise RecommenderRequestError("field 'segment_weight' must be positive")
        mechanism = releases.gram_mechanism(planned.noise_multiplier)

        def compute(rng: np.random.Generator) -> dict[str, np.ndarray]:
            return item_gram(
                self._histories(node, payload), item_index=item_index, n_segments=n_segments,
                segment_weight=weight, normalize=planned.noise_multiplier > 0,
            )  # fmt: skip

        return Answer(mechanism.as_release(planned.name), compute, mechanism)

    def content_check(
        self, node: MerchantNode, payload: Mapping[str, Any], planned: Release
    ) -> Answer:
        """Round 3: noisy extra hits per candidate scorer (client/recommender/check.py)."""
        from fedseg.privacy.published.recommender import RecommenderModel

        candidates = _array(payload, "candidates", ndim=2)
        try:
            model = RecommenderModel.from_arrays(payload)
        except ValueError as exc:
            raise RecommenderRequestError(f"the published model: {exc}") from None
        n_items, n_segments = len(_catalogue(payload)), len(centres_field(payload, node.schema.dim))
        if model.n_items != n_items or model.n_segments != n_segments:
            raise RecommenderRequestError("the published model does not match the catalogue")
        mechanism = releases.content_check_mechanism(
            planned.noise_multiplier, candidates=len(candidates)
        )

        def compute(rng: np.random.Generator) -> dict[str, np.ndarray]:
            return content_gain(self._histories(node, payload), model, candidates, rng)

        return Answer(mechanism.as_release(planned.name), compute, mechanism)

    def recommender_train(
        self, node: MerchantNode, payload: Mapping[str, Any], planned: Release
    ) -> Answer:
        """A FedAvg round of the dpsgd model: opacus DP-SGD on this merchant's customers,
        one sample = one customer's whole history, at this merchant's own sampling rate and
        number of steps (server/recommender/neural.py)."""
        from fedseg.client.recommender.dpsgd import LocalTrainingConfig, train_local
        from fedseg.privacy.published.neural import from_wire, to_wire

        policy, z = node.policy, planned.noise_multiplier
        try:
            config = LocalTrainingConfig(
                epochs=policy.dpsgd_epochs,
                sampling_rate=policy.dpsgd_sampling_rate,
                learning_rate=float(payload["learning_rate"]),
            )
            parameters = from_wire(dict(payload))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecommenderRequestError(f"the broadcast model: {exc}") from None
        release = releases.dpsgd_release(
            z, steps=policy.dpsgd_steps, sampling_rate=policy.dpsgd_sampling_rate
        )

        def compute(rng: np.random.Generator) -> dict[str, np.ndarray]:
            trained = train_local(
                self._histories(node, payload), parameters, config, rng,
                noise_multiplier=z if z > 0 else None,
            )  # fmt: skip
            return {name: value.astype(np.float64) for name, value in to_wire(trained).items()}

        return Answer(release, compute, None)

    # -- data -------------------------------------------------------------------------------

    def _histories(self, node: MerchantNode, payload: Mapping[str, Any]) -> CustomerHistories:
        catalogue = _catalogue(payload)
        centres = centres_field(payload, node.schema.dim)
        key = centres.tobytes() + "\x1f".join(map(str, catalogue)).encode()
        if self._cache is None or self._cache[0] != key:
            segments = local_segments(node, payload, centres)
            self._cache = (key, self._build(catalogue, segments))
        return self._cache[1]

    def _build(self, catalogue: list, segments: np.ndarray) -> CustomerHistories:
        if self._events is None:
            self._events = self.load_events()
        if self._events is None:
            raise RecommenderRequestError(
                "this merchant's data is a features table: it has no item histories"
            )
        events = string_ids(self._events)
        index = {str(item): position for position, item in enumerate(catalogue)}
        events = events[events["item_id"].isin(index.keys()).to_numpy()]
        segment_of = dict(zip(map(str, self.customer_ids), segments.tolist(), strict=True))
        histories = build_histories(events, index, segment_of)
        return drop_last_items(histories) if self.holdout_last else histories


def local_segments(
    node: MerchantNode, payload: Mapping[str, Any], centres: np.ndarray
) -> np.ndarray:
    """Each customer's nearest published centre, computed locally (as `fedseg assign`)."""
    scaling, z = node.scaled(payload)
    if centres.shape[1] != scaling.dim:
        raise RecommenderRequestError(
            f"'centres' has {centres.shape[1]} columns for {scaling.dim} features"
        )
    return nearest_centre(z, centres)


def string_ids(events: pd.DataFrame) -> pd.DataFrame:
    """user_id and item_id as plain str: `build_histories` groups by sorted user ids, which a
    categorical column (as loading gives) orders differently from numpy's sort."""
    return events.assign(
        user_id=events["user_id"].astype(str).to_numpy(dtype=object),
        item_id=events["item_id"].astype(str).to_numpy(dtype=object),
    )


def drop_last_items(histories: CustomerHistories) -> CustomerHistories:
    """Every customer with two or more items loses the last one (leave-last-out training)."""
    items = tuple(h[:-1] if len(h) >= 2 else h for h in histories.items)
    return CustomerHistories(histories.user_ids, items, histories.segments)


def _catalogue(payload: Mapping[str, Any]) -> list:
    catalogue = payload.get("items")
    if not isinstance(catalogue, list) or not catalogue:
        raise RecommenderRequestError("field 'items' must be a non-empty list of item ids")
    return catalogue


def _array(payload: Mapping[str, Any], name: str, *, ndim: int) -> np.ndarray:
    value = payload.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != ndim or not np.all(np.isfinite(value)):
        raise RecommenderRequestError(f"field {name!r} must be a finite {ndim}-d array")
    return value.astype(np.float64)
