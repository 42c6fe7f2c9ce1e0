"""Robust aggregation: no single merchant can drag the model far, whatever it sends.

Plain aggregation sums every valid reply, so one merchant that claims 100× its
customers, or flips the sign of its sums, moves every centre. Here each merchant's reply
becomes its own estimate (cluster means, or a normalized histogram), the estimates are
combined coordinate-wise by a weighted median or trimmed mean, and each merchant's
weight is capped at ``weight_cap`` times the median merchant's weight. With the median,
hostile merchants holding less than half of the capped weight cannot move a coordinate
outside the range of the honest estimates; with a trimmed mean, less than ``trim``.

Needs to see individual replies, so it cannot run under secure aggregation (there,
contributions are bounded at the client instead: see docs/robustness.md).
Everything here is post-processing of DP releases, so it costs no privacy.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from fedseg.server.aggregation import (
    Aggregate,
    ReplySpec,
    merchant_sizes,
    require_quorum,
    screen_replies,
)
from fedseg.server.transport import Payload, Reply, Transport

ROBUST_METHODS = ("median", "trimmed")
QUALIFY_SIGMAS = 3.0  # a merchant's cell counts only if its noisy count is ≥ 3σ (and ≥ 1)
MEDIAN_NOISE_FACTOR = float(np.sqrt(np.pi / 2))  # noise of a median over a mean, Gaussian data


@dataclass(frozen=True)
class RobustConfig:
    """How estimates are combined: ``median`` or ``trimmed`` (mean of the middle weight)."""

    method: str = "median"
    trim: float = 0.3  # weight fraction cut from each end, for ``trimmed``
    weight_cap: float = 1.5  # a merchant weighs at most this × the median merchant

    def __post_init__(self) -> None:
        if self.method not in ROBUST_METHODS:
            raise ValueError(f"robust method must be one of {ROBUST_METHODS}, got {self.method!r}")
        if not 0 <= self.trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {self.trim}")
        if not self.weight_cap >= 1:
            raise ValueError(f"weight_cap must be at least 1, got {self.weight_cap}")

    @property
    def cut(self) -> float:
        return 0.5 - 1e-9 if self.method == "median" else self.trim


class RobustAggregator:
    """An ``Aggregator``: request, validate every reply, then combine robustly.

    Returns sums consistent with the plain update (``sums = centre × count``), so the
    segmentation loop needs no change.
    """

    def __init__(
        self, transport: Transport, *, min_clients: int, config: RobustConfig | None = None
    ):
        self.transport = transport
        self.min_clients = min_clients
        self.config = config or RobustConfig()
        params = inspect.signature(transport.request).parameters
        self._sized = "max_bytes" in params  # transport can refuse big replies undecoded

    def __call__(
        self, task: str, payload: Payload, spec: ReplySpec, nodes: Sequence[int], **_: object
    ) -> Aggregate:
        if task == "feature_histograms":
            spec = replace(spec, equal_row_totals=True)
        replies = self._request(task, payload, nodes, spec)
        valid, log = screen_replies(str(payload.get("release", task)), nodes, replies, spec)
        require_quorum(log.task, log, min_clients=self.min_clients)
        if "sums" in spec.shapes:
            sums = self._cluster_stats(valid, spec)
        elif "count" in spec.shapes:
            sums = self._moments(valid, spec)
        else:
            sums = self._histograms(valid, spec)
        return Aggregate(sums=sums, log=log, sizes=merchant_sizes(valid, spec))

    def _request(
        self, task: str, payload: Payload, nodes: Sequence[int], spec: ReplySpec
    ) -> list[Reply]:
        if self._sized:
            return list(self.transport.request(task, payload, nodes, max_bytes=spec.max_bytes()))
        return list(self.transport.request(task, payload, nodes))

    def _cluster_stats(self, valid: Sequence[Reply], spec: ReplySpec) -> dict[str, np.ndarray]:
        sums = np.stack([r.payload["sums"] for r in valid]).astype(np.float64)  # (m, k, d)
        counts = np.stack([r.payload["counts"] for r in valid]).astype(np.float64)  # (m, k)
        sigma_c, sigma_s = spec.sigmas.get("counts", 0.0), spec.sigmas.get("sums", 0.0)
        qualified = counts >= max(QUALIFY_SIGMAS * sigma_c, 1.0)
        means = sums / np.where(qualified, counts, 1.0)[..., None]
        # Precision of a merchant's cluster mean in standardized units (within-cluster
        # variance ≤ 1 per coordinate, plus the DP noise σ_s²/c²): c² / (c + σ_s²).
        precision = np.where(qualified, counts**2 / (np.maximum(counts, 1.0) + sigma_s**2), 0.0)
        weights = cap_weights(precision, qualified, self.config.weight_cap)
        centres = weighted_trimmed_mean(means, weights[..., None], self.config.cut)
        total = capped_total(counts, qualified, self.config.weight_cap)
        plain_sums, plain_counts = sums.sum(axis=0), counts.sum(axis=0)
        nobody = ~qualified.any(axis=0)  # no merchant has a trustworthy mean: plain sum
        out_sums = np.where(nobody[:, None], plain_sums, centres * total[:, None])
        out_counts = np.where(nobody, plain_counts, total)
        # Other parts (the distance histogram that sets the next radius) are summed: each
        # merchant's share of them is bounded by its own customers, as its counts are.
        others = {
            part: np.sum([r.payload[part] for r in valid], axis=0)
            for part in spec.shapes
            if part not in ("sums", "counts")
        }
        return {"sums": out_sums, "counts": out_counts, **others}

    def _moments(self, valid: Sequence[Reply], spec: ReplySpec) -> dict[str, np.ndarray]:
        """Each merchant's moments per customer (Σu/n, Σu²/n, ...), combined robustly and
        scaled by the capped total count."""
        counts = np.array([float(r.payload["count"][0]) for r in valid])
        qualified = counts >= max(QUALIFY_SIGMAS * spec.sigmas.get("count", 0.0), 1.0)
        if not qualified.any():
            return {part: np.sum([r.payload[part] for r in valid], axis=0) for part in spec.shapes}
        weights = cap_weights(counts[qualified], np.ones(int(qualified.sum()), bool),
                              self.config.weight_cap)  # fmt: skip
        total = float(capped_total(counts, qualified, self.config.weight_cap))
        out = {"count": np.array([total])}
        for part in spec.shapes:
            if part == "count":
                continue
            per_customer = np.stack([r.payload[part] / c for r, c, q in
                                     zip(valid, counts, qualified, strict=True) if q])  # fmt: skip
            shaped = weights.reshape((-1,) + (1,) * (per_customer.ndim - 1))
            out[part] = weighted_trimmed_mean(per_customer, shaped, self.config.cut) * total
        return out

    def _histograms(self, valid: Sequence[Reply], spec: ReplySpec) -> dict[str, np.ndarray]:
        counts = np.stack([r.payload["counts"] for r in valid]).astype(np.float64)  # (m, d, bins)
        sigma = spec.sigmas.get("counts", 0.0)
        sizes = counts.sum(axis=2).mean(axis=1)  # customers per merchant (noisy), (m,)
        bins = counts.shape[2]
        noise = sigma * np.sqrt(bins / counts.shape[1])
        qualified = sizes >= max(QUALIFY_SIGMAS * noise, 1.0)
        if not qualified.any():
            return {"counts": counts.sum(axis=0)}
        shares = counts[qualified] / sizes[qualified, None, None]
        weights = cap_weights(
            sizes[qualified], np.ones(int(qualified.sum()), bool), self.config.weight_cap
        )
        shape = weighted_trimmed_mean(shares, weights[:, None, None], self.config.cut)
        total = capped_total(sizes, qualified, self.config.weight_cap)
        robust = shape * total
        # A median is noisier than a mean (×√(π/2) for Gaussian noise), and the caller's
        # 3σ denoising assumes the plain sum's noise σ·√m: clear what is noise at ours.
        sigma_out = MEDIAN_NOISE_FACTOR * sigma * np.sqrt(len(valid))
        return {"counts": np.where(robust >= QUALIFY_SIGMAS * sigma_out, robust, 0.0)}


def cap_weights(weights: np.ndarray, qualified: np.ndarray, cap: float) -> np.ndarray:
    """Weights (merchants on axis 0) capped at ``cap`` × the median qualified weight."""
    masked = np.where(qualified, weights, np.nan)
    any_qualified = qualified.any(axis=0)
    filled = np.where(any_qualified, masked, 0.0)  # all-NaN columns would warn
    median = np.where(any_qualified, np.nanmedian(filled, axis=0), 0.0)
    return np.where(qualified, np.minimum(weights, cap * median), 0.0)


def capped_total(counts: np.ndarray, qualified: np.ndarray, cap: float) -> np.ndarray:
    """Total count: qualified merchants capped at ``cap`` × their median, the rest as sent
    (each of those is below the qualifying threshold, so none can add much)."""
    capped = cap_weights(counts, qualified, cap).sum(axis=0)
    return capped + np.where(qualified, 0.0, counts).sum(axis=0)


def weighted_trimmed_mean(values: np.ndarray, weights: np.ndarray, cut: float) -> np.ndarray:
    """Coordinate-wise mean over axis 0 of the middle ``1 - 2·cut`` of the weight.

    Each value owns the interval of cumulative weight it spans in sorted order; the part
    of it inside [cut·W, (1−cut)·W] is kept. ``cut`` → 0.5 gives the weighted median.
    Coordinates with no weight come back NaN.
    """
    weights = np.broadcast_to(weights, values.shape)
    order = np.argsort(values, axis=0, kind="stable")
    v = np.take_along_axis(values, order, axis=0)
    w = np.take_along_axis(weights, order, axis=0)
    upper = np.cumsum(w, axis=0)
    lower = upper - w
    total = upper[-1]
    kept = np.clip(np.minimum(upper, (1 - cut) * total) - np.maximum(lower, cut * total), 0.0, None)
    kept_total = kept.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept_total > 0, (kept * v).sum(axis=0) / kept_total, np.nan)
