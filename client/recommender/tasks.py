"""A merchant's answers to the recommender rounds (DP-EASE, docs/recommender.md).

Each request carries the published segmentation (scaler + centres) and the public item
catalogue; the merchant assigns its own customers' segments locally, builds their item
histories and releases one Gaussian statistic per round through the colleague's
`popularity_statistics` / `gram_statistics`, which charge the merchant's ledger before
any statistic is computed. Sensitivities are fixed here (unit-norm history rows), never
taken from the server. Under secure aggregation (`client.secure`) the same handlers run
with a noise share and without charging; the secure step charges instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fedseg.client.recommender.check import (
    CONTENT_CHECK_RELEASE,
    content_check_mechanism,
    content_gain_statistics,
)
from fedseg.client.recommender.gram import (
    GRAM_RELEASE,
    POPULARITY_RELEASE,
    gram_mechanism,
    gram_statistics,
    popularity_mechanism,
    popularity_statistics,
)
from fedseg.client.recommender.histories import CustomerHistories, build_histories
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import BudgetExceeded
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server.recommender.model import RecommenderModel

if TYPE_CHECKING:
    from fedseg.client.node import MerchantNode, ReleaseMode

TASKS = ("item_popularity", "item_gram", "content_check", "recommender_train")


class RecommenderRequestError(ValueError):
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
        self, node: MerchantNode, payload: Mapping[str, Any], mode: ReleaseMode
    ) -> dict[str, np.ndarray]:
        """Round 1: noisy unit-norm item popularity {"overall": (n_items,)}."""
        z = _noise_multiplier(payload)
        mechanism = popularity_mechanism(noise_multiplier=z, segment_share=0.0)
        _refuse_early(node, mode, mechanism.as_release(POPULARITY_RELEASE))
        histories, n_items, n_segments = self._histories(node, payload)
        return popularity_statistics(
            histories,
            n_items=n_items,
            n_segments=n_segments,
            noise_multiplier=z,
            **_release_args(node, payload, mode),
        )

    def item_gram(
        self, node: MerchantNode, payload: Mapping[str, Any], mode: ReleaseMode
    ) -> dict[str, np.ndarray]:
        """Round 2: the noisy Gram over `item_index` + segment columns, upper triangle only."""
        z = _noise_multiplier(payload)
        _refuse_early(node, mode, gram_mechanism(noise_multiplier=z).as_release(GRAM_RELEASE))
        histories, n_items, n_segments = self._histories(node, payload)
        item_index = payload.get("item_index")
        if not isinstance(item_index, np.ndarray) or item_index.ndim != 1 or not len(item_index):
            raise RecommenderRequestError("field 'item_index' must be a non-empty 1-d array")
        item_index = item_index.astype(np.int64)
        if item_index.min() < 0 or item_index.max() >= n_items:
            raise RecommenderRequestError("field 'item_index' points outside the catalogue")
        gram = gram_statistics(
            histories,
            item_index=item_index,
            noise_multiplier=z,
            n_segments=n_segments,
            segment_weight=float(payload.get("segment_weight", 1.0)),
            normalize=bool(payload.get("normalize", True)),
            **_release_args(node, payload, mode),
        )["gram"]
        return {"gram": gram[np.triu_indices(len(gram))]}

    def content_check(
        self, node: MerchantNode, payload: Mapping[str, Any], mode: ReleaseMode
    ) -> dict[str, np.ndarray]:
        """Round 3: noisy extra hits per candidate scorer (client/recommender/check.py)."""
        z = _noise_multiplier(payload)
        candidates = _array(payload, "candidates", ndim=2)
        mechanism = content_check_mechanism(noise_multiplier=z, candidates=len(candidates))
        _refuse_early(node, mode, mechanism.as_release(CONTENT_CHECK_RELEASE))
        histories, n_items, n_segments = self._histories(node, payload)
        try:
            model = RecommenderModel.from_arrays(payload)
        except ValueError as exc:
            raise RecommenderRequestError(f"the published model: {exc}") from None
        if model.n_items != n_items or model.n_segments != n_segments:
            raise RecommenderRequestError("the published model does not match the catalogue")
        return content_gain_statistics(
            histories,
            model,
            candidates,
            noise_multiplier=z,
            **_release_args(node, payload, mode),
        )

    def recommender_train(
        self, node: MerchantNode, payload: Mapping[str, Any], mode: ReleaseMode
    ) -> dict[str, np.ndarray]:
        """A FedAvg round of the dpsgd model: opacus DP-SGD on this merchant's customers,
        one sample = one customer's whole history (server/recommender/neural.py)."""
        from fedseg.client.recommender.dpsgd import LocalTrainingConfig, dpsgd_release, train_local
        from fedseg.client.recommender.model import from_wire, to_wire

        z = _noise_multiplier(payload)
        config = LocalTrainingConfig(
            epochs=float(payload["epochs"]),
            sampling_rate=float(payload["sampling_rate"]),
            learning_rate=float(payload["learning_rate"]),
        )
        release = dpsgd_release(config, noise_multiplier=z)
        if release != Release.of_request(payload):  # what the secure path would charge
            raise RecommenderRequestError(
                f"the request's accounting ({payload.get('release_count')} steps) does not match "
                f"its training ({config.steps} steps at rate {config.sampling_rate})"
            )
        _refuse_early(node, mode, release)
        histories, n_items, n_segments = self._histories(node, payload)
        parameters = from_wire(dict(payload))
        try:
            trained = train_local(
                histories, parameters, config, node.rng_for(int(payload["request_id"])),
                noise_multiplier=z if z > 0 else None,
                ledger=node.ledger if mode.charge else None,
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise RecommenderRequestError(f"the broadcast model: {exc}") from None
        return {name: value.astype(np.float64) for name, value in to_wire(trained).items()}

    # -- data -------------------------------------------------------------------------------

    def _histories(
        self, node: MerchantNode, payload: Mapping[str, Any]
    ) -> tuple[CustomerHistories, int, int]:
        catalogue = payload.get("items")
        if not isinstance(catalogue, list) or not catalogue:
            raise RecommenderRequestError("field 'items' must be a non-empty list of item ids")
        centres = _array(payload, "centres", ndim=2)
        key = centres.tobytes() + "\x1f".join(map(str, catalogue)).encode()
        if self._cache is None or self._cache[0] != key:
            segments = assign_segments(node, payload, centres)
            self._cache = (key, self._build(catalogue, segments))
        return self._cache[1], len(catalogue), len(centres)

    def _build(self, catalogue: list, segments: np.ndarray) -> CustomerHistories:
        if self._events is None:
            self._events = self.load_events()
        if self._events is None:
            raise RecommenderRequestError(
                "this merchant's data is a features table: it has no item histories"
            )
        events = string_ids(self._events)
        index = {str(item): position for position, item in enumerate(catalogue)}
        segment_of = dict(zip(map(str, self.customer_ids), segments.tolist(), strict=True))
        histories = build_histories(events, index, segment_of)
        return drop_last_items(histories) if self.holdout_last else histories


def assign_segments(
    node: MerchantNode, payload: Mapping[str, Any], centres: np.ndarray
) -> np.ndarray:
    """Each customer's nearest published centre, computed locally (as `fedseg assign`)."""
    scaling = FeatureScaling(
        names=node.names,
        log=node.log,
        lower=tuple(_array(payload, "lower", ndim=1)),
        upper=tuple(_array(payload, "upper", ndim=1)),
        mean=tuple(_array(payload, "mean", ndim=1)),
        scale=tuple(_array(payload, "scale", ndim=1)),
        radius=float(payload.get("radius", 1.0)),
    )
    if centres.shape[1] != scaling.dim:
        raise RecommenderRequestError(
            f"'centres' has {centres.shape[1]} columns for {scaling.dim} features"
        )
    z = scaling.transform(node.features)
    return np.argmin(((z[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)


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


def _release_args(node: MerchantNode, payload: Mapping[str, Any], mode: ReleaseMode) -> dict:
    """The request's noise stream, this merchant's noise share, and the ledger to charge (none
    under secure aggregation: the secure step charges)."""
    return {
        "rng": node.rng_for(int(payload["request_id"])),
        "noise_share": mode.noise_share,
        "ledger": node.ledger if mode.charge else None,
    }


def _refuse_early(node: MerchantNode, mode: ReleaseMode, release: Release) -> None:
    """A capped ledger refuses before any history is built (the release charges it later)."""
    if mode.charge and node.ledger.would_exceed(release):
        raise BudgetExceeded("a recommender request would exceed this merchant's privacy cap")


def _noise_multiplier(payload: Mapping[str, Any]) -> float:
    z = float(payload["noise_multiplier"])
    if not (z >= 0 and np.isfinite(z)):
        raise RecommenderRequestError(f"'noise_multiplier' must be finite and ≥ 0, got {z}")
    return z


def _array(payload: Mapping[str, Any], name: str, *, ndim: int) -> np.ndarray:
    value = payload.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != ndim or not np.all(np.isfinite(value)):
        raise RecommenderRequestError(f"field {name!r} must be a finite {ndim}-d array")
    return value.astype(np.float64)
