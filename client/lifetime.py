"""A merchant's answers to the lifetime-value rounds (docs/lifetime_value.md).

Every customer who bought collapses into one summary first — x repeat purchase days, t_x,
T (days, from the run's public as-of) and the mean repeat spend m (client/features.py) — so
one customer is one count in one public cell, or one bounded term in one segment's sums.
Each handler decides how to answer (the mechanism from privacy/releases.py with the planned
noise multiplier, and the raw statistic); the node's one release path charges, computes and
noises (client/node.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fedseg.client.features import build_features
from fedseg.client.node import Answer, BadRequest, centres_field
from fedseg.privacy import releases
from fedseg.privacy.accounting import Release
from fedseg.privacy.protocol.builtin import known_feature
from fedseg.privacy.published import lifetime
from fedseg.privacy.published.segments import nearest_centre

if TYPE_CHECKING:
    from fedseg.client.node import MerchantNode

LIFETIME_TASKS = ("lifetime_histograms", "lifetime_sums")
SUMMARY_FEATURES = tuple(
    known_feature(n)
    for n in ("purchase_days", "purchase_span_days", "customer_age_days", "repeat_day_spend")
)


@dataclass(frozen=True)
class PurchaseSummaries:
    """One row per customer of the node (in its order); ``bought`` marks the CLV customers."""

    x: np.ndarray
    t_x: np.ndarray
    age: np.ndarray
    spend: np.ndarray
    bought: np.ndarray


def purchase_summaries(
    events: pd.DataFrame, customer_ids: Sequence[str], as_of
) -> PurchaseSummaries:
    """(x, t_x, T, m) of each customer in ``customer_ids`` from the clean events."""
    table = build_features(events, features=SUMMARY_FEATURES, as_of=as_of)
    table.index = table.index.astype(str)
    table = table.reindex([str(c) for c in customer_ids]).fillna(0.0)
    days = table["purchase_days"].to_numpy()
    bought = days >= 1
    return PurchaseSummaries(
        x=np.where(bought, days - 1, 0.0),
        t_x=np.where(bought, table["purchase_span_days"].to_numpy(), 0.0),
        age=np.where(bought, table["customer_age_days"].to_numpy(), 0.0),
        spend=table["repeat_day_spend"].to_numpy(),
        bought=bought,
    )


def lifetime_histograms(
    s: PurchaseSummaries, segments: np.ndarray, k: int, grid: lifetime.LifetimeGrid
) -> dict[str, np.ndarray]:
    """Raw counts: customers per purchase cell, per spend cell for those with x ≥ 1, and per
    (segment, activity bin) cell, flattened segment by segment."""
    b = s.bought
    purchases = np.bincount(
        grid.purchase_cell(s.x[b], s.t_x[b], s.age[b]), minlength=grid.purchase_cells
    )
    repeat = b & (s.x >= 1)
    spend = np.bincount(grid.spend_cell(s.x[repeat], s.spend[repeat]), minlength=grid.spend_cells)
    cells = segments[b] * grid.activity_bins + grid.activity_bin(s.x[b], s.t_x[b], s.age[b])
    activity = np.bincount(cells, minlength=k * grid.activity_bins)
    return {
        "purchases": purchases.astype(np.float64),
        "spend": spend.astype(np.float64),
        "activity": activity.astype(np.float64),
    }


def lifetime_sums(
    s: PurchaseSummaries, segments: np.ndarray, request: LifetimeRequest
) -> dict[str, np.ndarray]:
    """Raw per-segment sums of each buying customer's clipped, normalized figures."""
    b, k = s.bought, len(request.purchase_bounds)
    x, t_x, age, seg = s.x[b], s.t_x[b], s.age[b], segments[b]
    purchases = lifetime.expected_purchases(request.horizon, request.bgnbd, x, t_x, age)
    alive = lifetime.probability_alive(request.bgnbd, x, t_x, age)
    value = purchases * lifetime.expected_order_value(request.gamma_gamma, x, s.spend[b])
    bound, cap = request.purchase_bounds[seg], request.purchase_caps[seg]
    value_bound, value_cap = request.value_bounds[seg], request.value_caps[seg]
    terms = {
        "purchases": np.clip(purchases / bound, 0.0, 1.0),
        "purchases_tail": np.clip((purchases - bound) / (cap - bound), 0.0, 1.0),
        "alive": np.clip(alive, 0.0, 1.0),
        "value": np.clip(value / value_bound, 0.0, 1.0),
        "value_tail": np.clip((value - value_bound) / (value_cap - value_bound), 0.0, 1.0),
        "counts": np.ones(len(seg)),
    }
    return {
        part: np.bincount(seg, weights=np.nan_to_num(v), minlength=k) for part, v in terms.items()
    }


@dataclass(frozen=True)
class LifetimeRequest:
    """The public model of a `lifetime_sums` request, validated once."""

    bgnbd: tuple[float, float, float, float]
    gamma_gamma: tuple[float, float, float]
    horizon: float
    purchase_bounds: np.ndarray
    purchase_caps: np.ndarray
    value_bounds: np.ndarray
    value_caps: np.ndarray

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], k: int) -> LifetimeRequest:
        bgnbd, gg = _positive(payload, "bgnbd", 4), _positive(payload, "gamma_gamma", 3)
        if gg[1] <= 1:  # the mean order value p·v/(q − 1) needs q > 1
            raise BadRequest("the Gamma-Gamma model needs q > 1")
        bounds = {n: _positive(payload, n, k) for n in _BOUNDS}
        if np.any(bounds["purchase_caps"] <= bounds["purchase_bounds"]) or np.any(
            bounds["value_caps"] <= bounds["value_bounds"]
        ):
            raise BadRequest("each cap must exceed its bound")
        horizon = float(_positive(payload, "horizon", 1)[0])
        return cls(bgnbd=tuple(bgnbd), gamma_gamma=tuple(gg), horizon=horizon, **bounds)


@dataclass
class LifetimeTasks:
    """The node's purchase summaries, built on the first lifetime request."""

    customer_ids: Sequence[str]
    load_events: Callable[[], pd.DataFrame | None]
    as_of: object
    grid: lifetime.LifetimeGrid = field(default_factory=lifetime.LifetimeGrid)
    _summaries: PurchaseSummaries | None = field(default=None, repr=False)

    def lifetime_histograms(
        self, node: MerchantNode, payload: Mapping[str, Any], planned: Release
    ) -> Answer:
        mechanism = releases.lifetime_histogram_mechanism(planned.noise_multiplier)
        segments, k = _segments(node, payload)
        summaries = self.summaries()
        return Answer(
            mechanism.as_release(planned.name),
            lambda rng: lifetime_histograms(summaries, segments, k, self.grid),
            mechanism,
        )

    def lifetime_sums(
        self, node: MerchantNode, payload: Mapping[str, Any], planned: Release
    ) -> Answer:
        segments, k = _segments(node, payload)
        request = LifetimeRequest.from_payload(payload, k)
        mechanism = releases.lifetime_sums_mechanism(planned.noise_multiplier)
        summaries = self.summaries()
        return Answer(
            mechanism.as_release(planned.name),
            lambda rng: lifetime_sums(summaries, segments, request),
            mechanism,
        )

    def summaries(self) -> PurchaseSummaries:
        if self._summaries is None:
            events = self.load_events()
            if events is None:
                raise BadRequest("this merchant's data is a features table: it has no purchases")
            self._summaries = purchase_summaries(events, self.customer_ids, self.as_of)
        return self._summaries


def offer_lifetime_value(
    node: MerchantNode,
    *,
    customer_ids: Sequence[str],
    load_events: Callable[[], pd.DataFrame | None],
    as_of: object,
) -> None:
    """Register the lifetime-value tasks on ``node``; events are loaded on first use."""
    tasks = LifetimeTasks(customer_ids, load_events, as_of)
    node.register("lifetime_histograms", tasks.lifetime_histograms)
    node.register("lifetime_sums", tasks.lifetime_sums)


def _segments(node: MerchantNode, payload: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """Each customer's segment of the published centres in the request, and their number."""
    scaling, z = node.scaled(payload)
    centres = centres_field(payload, scaling.dim)
    return nearest_centre(z, centres), len(centres)


_BOUNDS = ("purchase_bounds", "purchase_caps", "value_bounds", "value_caps")


def _positive(payload: Mapping[str, Any], name: str, size: int) -> np.ndarray:
    value = payload.get(name)
    if not isinstance(value, np.ndarray) or value.shape != (size,) or value.dtype.kind not in "fiu":
        raise BadRequest(f"field {name!r} must be a numeric array of {size}")
    if not np.all(np.isfinite(value)) or np.any(value <= 0):
        raise BadRequest(f"field {name!r} must be finite and positive")
    return value.astype(np.float64)
