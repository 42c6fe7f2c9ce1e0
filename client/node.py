"""A merchant's side of the protocol: answer the server's requests with DP statistics.

Every noisy answer takes one path (``MerchantNode.answer``, or ``prepare`` under secure
aggregation): the request must name a release the accepted plan covers; the node builds the
release's mechanism itself (privacy/releases.py) from the planned noise multiplier and its
own clipping; it charges its own ledger with that release; only then is the statistic
computed and noised. The server only names which planned release it wants: it cannot talk
the node into a smaller noise, a larger sensitivity or a second draw of the same noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fedseg.client.plan import AcceptedPlan
from fedseg.client.policy import MerchantPolicy
from fedseg.client.statistics import cluster_statistics, feature_histograms
from fedseg.privacy import releases
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.releases import NoisePlacement
from fedseg.privacy.scaling import FeatureScaling

LOCAL = NoisePlacement()


class BadRequest(ValueError):
    """The server asked for something malformed; nothing was computed or released."""


@dataclass(frozen=True)
class Answer:
    """How a merchant answers one request, decided before any data is read.

    ``release`` is what its ledger is charged; ``compute`` gives the raw statistic (it may use
    the generator, e.g. to sample negatives); ``mechanism`` is the noise the node adds to it
    (None when ``compute`` adds the noise itself, as DP-SGD does at every step).
    """

    release: Release
    compute: Callable[[np.random.Generator], dict[str, np.ndarray]]
    mechanism: GaussianMechanism | None


Handler = Callable[["MerchantNode", Mapping[str, Any], Release], Answer]


@dataclass(frozen=True)
class FeatureColumns:
    """The merchant's feature columns as the schema declares them (original units)."""

    names: tuple[str, ...]
    log: tuple[bool, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


class MerchantNode:
    """One merchant's customers (one feature vector each), ledger, policy and noise source."""

    def __init__(
        self,
        features: np.ndarray,
        *,
        columns: FeatureColumns,
        ledger: PrivacyLedger,
        policy: MerchantPolicy,
        noise_seed: Sequence[int] | None = None,
    ) -> None:
        self.features = np.asarray(features, dtype=np.float64)
        self.columns = columns
        self.ledger = ledger
        self.policy = policy
        self.noise_seed = None if noise_seed is None else tuple(noise_seed)
        self.secure_identity = None  # who the merchant is in secure rounds (client/secure.py)
        self._scaled: tuple[FeatureScaling, np.ndarray] | None = None
        self._scaled_key: tuple | None = None  # the raw scaling fields _scaled_bound came from
        self._scaled_bound: tuple[FeatureScaling, np.ndarray, float] | None = None
        self._handlers: dict[str, Handler] = {
            "feature_histograms": _histograms,
            "cluster_stats": _cluster_stats,
            "square_norm": _square_norm,
        }

    @property
    def names(self) -> tuple[str, ...]:
        return self.columns.names

    def register(self, task: str, handler: Handler) -> None:
        """Answer ``task`` with ``handler`` too (the recommender rounds)."""
        self._handlers[task] = handler

    def describe(self) -> dict:
        """Public feature declaration: names, log flags and ranges (model space)."""
        log = np.asarray(self.columns.log)
        lower, upper = np.asarray(self.columns.lower), np.asarray(self.columns.upper)
        return {
            "names": list(self.names),
            "log": log.astype(np.float64),
            "lower": np.where(log, np.log1p(np.maximum(lower, 0)), lower),
            "upper": np.where(log, np.log1p(np.maximum(upper, 0)), upper),
        }

    def answer(self, task: str, payload: Mapping[str, Any], plan: AcceptedPlan) -> dict:
        """Answer one noisy request with local noise, charging the ledger first."""
        return self.prepare(task, payload, plan, LOCAL, charge=True)[0]

    def prepare(
        self,
        task: str,
        payload: Mapping[str, Any],
        plan: AcceptedPlan,
        placement: NoisePlacement,
        *,
        charge: bool = False,
    ) -> tuple[dict, Release]:
        """The noisy statistic (this merchant's share ``placement`` of the noise) and the
        release to charge for it. With ``charge`` the ledger is charged before anything is
        computed; otherwise (secure aggregation) the caller must charge before the values
        leave, and refuses early here if they could not be charged."""
        if task not in self._handlers:
            raise BadRequest(f"unknown task {task!r}")
        planned = plan.planned(task, payload.get("release"))
        answer = self._handlers[task](self, payload, planned)
        plan.consume(answer.release)
        if charge:
            self.ledger.charge(answer.release)
        elif self.ledger.would_exceed(answer.release):
            raise_budget(answer.release)
        rng = self.fresh_rng()
        values = answer.compute(rng)
        if answer.mechanism is not None:
            values = placement.per_merchant(answer.mechanism).release(values, rng)
        return values, answer.release

    def fresh_rng(self) -> np.random.Generator:
        """A generator never handed out before: OS entropy in deployments; in seeded
        simulations and test mode, the seed plus a stream number from the ledger (never a
        value the server chooses)."""
        if self.noise_seed is None:
            return np.random.default_rng()
        return np.random.default_rng([*self.noise_seed, self.ledger.next_stream()])

    def scaled(self, payload: Mapping[str, Any]) -> tuple[FeatureScaling, np.ndarray, float]:
        """The request's public scaling, the customers in that standardized space, and the L2
        bound of one transformed customer (the sensitivity of a sum), reused while the
        request's scaling stays the same (it does every Lloyd round)."""
        key = _scaling_key(payload)
        if key is not None and self._scaled_key == key:  # the same bytes as last time
            return self._scaled_bound
        try:
            scaling = FeatureScaling.from_payload(payload, names=self.names, log=self.columns.log)
        except ValueError as exc:
            raise BadRequest(f"the request's scaling: {exc}") from None
        if self._scaled is None or self._scaled[0] != scaling:
            self._scaled = (scaling, scaling.transform(self.features))
        scaling, z = self._scaled
        self._scaled_key = key
        self._scaled_bound = (scaling, z, min(scaling.radius, scaling.box_radius()))
        return self._scaled_bound

    def model_space(self) -> np.ndarray:
        """Features with log1p applied where the schema says so (not clipped)."""
        x = self.features.copy()
        log = np.asarray(self.columns.log)
        x[:, log] = np.log1p(np.maximum(x[:, log], 0.0))
        return x


def _scaling_key(payload: Mapping[str, Any]) -> tuple | None:
    """The scaling fields of a request as bytes (None if any is not a float64 vector or the
    radius not a finite float): equal keys parse to the same scaling, so a node skips the
    parse and the checks it passed before (a few hundred µs a message at 10,000 merchants)."""
    parts = []
    for name in ("lower", "upper", "mean", "scale"):
        value = payload.get(name)
        if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.ndim != 1:
            return None
        parts.append(value.tobytes())
    radius = payload.get("radius")
    if not isinstance(radius, float) or not np.isfinite(radius):
        return None
    return (*parts, radius)


def raise_budget(release: Release) -> None:
    from fedseg.privacy.ledger import BudgetExceeded

    raise BudgetExceeded(f"release {release.name!r} would exceed this merchant's privacy cap")


def _histograms(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    edges = _array(payload, "edges", ndim=2)
    if edges.shape[0] != len(node.names) or edges.shape[1] < 2:
        raise BadRequest(f"'edges' has shape {edges.shape}, expected ({len(node.names)}, bins+1)")
    if np.any(np.diff(edges, axis=1) <= 0):
        raise BadRequest("'edges' must increase along each feature")
    mechanism = releases.histogram_mechanism(planned.noise_multiplier, n_features=len(node.names))
    return Answer(
        mechanism.as_release(planned.name),
        lambda rng: {"counts": feature_histograms(node.model_space(), edges)},
        mechanism,
    )


def _square_norm(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    """Σ‖z‖² over this merchant's customers: with the cluster statistics it gives the
    within-cluster cost, which choosing k needs."""
    _, z, radius = node.scaled(payload)
    mechanism = releases.square_norm_mechanism(planned.noise_multiplier, radius=radius)
    return Answer(
        mechanism.as_release(planned.name),
        lambda rng: {"square_norm": np.array([np.sum(z**2)])},
        mechanism,
    )


def _cluster_stats(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    scaling, z, radius = node.scaled(payload)
    centres = _array(payload, "centres", ndim=2)
    if centres.shape[1] != scaling.dim or len(centres) < 1:
        raise BadRequest(f"'centres' has shape {centres.shape} for {scaling.dim} features")
    mechanism = releases.cluster_mechanism(planned.noise_multiplier, radius=radius, dim=scaling.dim)

    def compute(rng: np.random.Generator) -> dict[str, np.ndarray]:
        sums, counts = cluster_statistics(z, centres)
        return {"sums": sums, "counts": counts}

    return Answer(mechanism.as_release(planned.name), compute, mechanism)


def _array(payload: Mapping[str, Any], name: str, *, ndim: int) -> np.ndarray:
    value = payload.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != ndim or value.dtype.kind not in "fiu":
        raise BadRequest(f"field {name!r} must be a numeric {ndim}-d array")
    if not np.all(np.isfinite(value)):
        raise BadRequest(f"field {name!r} has non-finite values")
    return value.astype(np.float64)
