"""A merchant's side of the protocol: answer the server's requests with DP statistics.

Every noisy answer takes one path (``MerchantNode.answer``, or ``prepare`` under secure
aggregation): the request must name a release the accepted plan covers; the node builds the
release's mechanism itself (privacy/releases.py) from the planned noise multiplier and its
own clipping; it charges its own ledger with that release; only then is the statistic
computed and noised. The server only names which planned release it wants: it cannot talk
the node into a smaller noise, a larger sensitivity or a second draw of the same noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fedseg.client.plan import AcceptedPlan
from fedseg.client.policy import MerchantPolicy
from fedseg.client.statistics import (
    clipped_moments,
    displacement_statistics,
    feature_histograms,
    segment_value_sums,
)
from fedseg.privacy import releases
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.mechanisms import GaussianMechanism, clip_rows_l2
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.published.segments import nearest_centre
from fedseg.privacy.releases import NoisePlacement
from fedseg.privacy.scaling import FeatureScaling, to_unit

LOCAL = NoisePlacement()
MAX_CENTRES = 100_000  # centres or candidate cells in one request


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


class MerchantNode:
    """One merchant's customers (one feature vector each, in the operator's schema), ledger,
    policy and noise source."""

    def __init__(
        self,
        features: np.ndarray,
        *,
        schema: FeatureSchema,
        ledger: PrivacyLedger,
        policy: MerchantPolicy,
        noise_seed: Sequence[int] | None = None,
    ) -> None:
        self.features = np.asarray(features, dtype=np.float64)
        if self.features.ndim != 2 or self.features.shape[1] != schema.dim:
            raise ValueError(f"features {self.features.shape} for {schema.dim} schema features")
        self.schema = schema
        self.ledger = ledger
        self.policy = policy
        self.noise_seed = None if noise_seed is None else tuple(noise_seed)
        self.secure_identity = None  # who the merchant is in secure rounds (client/secure.py)
        self._scaled: tuple[FeatureScaling, np.ndarray] | None = None
        self._scaled_key: tuple | None = None  # the raw scaling fields _scaled came from
        self._model_space: np.ndarray | None = None
        self._handlers: dict[str, Handler] = {
            "feature_histograms": _ranges,
            "feature_moments": _moments,
            "cluster_displacements": _displacements,
            "segment_profiles": _profiles,
            "square_norm": _square_norm,
        }

    @property
    def names(self) -> tuple[str, ...]:
        return self.schema.names

    def register(self, task: str, handler: Handler) -> None:
        """Answer ``task`` with ``handler`` too (the recommender rounds)."""
        self._handlers[task] = handler

    def describe(self) -> dict:
        """Which schema this merchant applies (its digest): nothing about its data."""
        return {"schema_digest": self.schema.digest()}

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

    def scaled(self, payload: Mapping[str, Any]) -> tuple[FeatureScaling, np.ndarray]:
        """The request's public scaling and the customers in that standardized space, reused
        while the request's scaling stays the same (it does every Lloyd round)."""
        key = _scaling_key(payload)
        if key is not None and self._scaled is not None and self._scaled_key == key:
            return self._scaled  # the same bytes as last time: the same parse and checks
        try:
            scaling = FeatureScaling.from_payload(payload, names=self.names, log=self.schema.log)
        except ValueError as exc:
            raise BadRequest(f"the request's scaling: {exc}") from None
        if self._scaled is None or self._scaled[0] != scaling:
            self._scaled = (scaling, scaling.transform(self.features))
        self._scaled_key = key
        return self._scaled

    def model_space(self) -> np.ndarray:
        """Features on the clustering scale: log1p where the schema says so, clipped to its
        known public bounds."""
        if self._model_space is None:
            self._model_space = self.schema.to_model_space(self.features)
        return self._model_space


def _scaling_key(payload: Mapping[str, Any]) -> tuple | None:
    """The scaling fields of a request as bytes (None if any is not a float64 vector):
    equal keys parse to the same scaling, so a node skips the parse and the checks it
    passed before (a few hundred µs a message at 10,000 merchants)."""
    parts = []
    for name in ("lower", "upper", "mean", "scale"):
        value = payload.get(name)
        if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.ndim != 1:
            return None
        parts.append(value.tobytes())
    return tuple(parts)


def raise_budget(release: Release) -> None:
    from fedseg.privacy.ledger import BudgetExceeded

    raise BudgetExceeded(f"release {release.name!r} would exceed this merchant's privacy cap")


def _ranges(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    """One histogram per feature over the request's public bin edges (range finding)."""
    d = node.schema.dim
    edges = _array(payload, "edges", ndim=2)
    if edges.shape[0] != d or edges.shape[1] < 2:
        raise BadRequest(f"'edges' has shape {edges.shape}, expected ({d}, bins+1)")
    if np.any(np.diff(edges, axis=1) <= 0):
        raise BadRequest("'edges' must increase along each feature")
    mechanism = releases.histogram_mechanism(planned.noise_multiplier, n_features=d)
    return Answer(
        mechanism.as_release(planned.name),
        lambda rng: {"counts": feature_histograms(node.model_space(), edges)},
        mechanism,
    )


def _moments(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    """Count, Σu, Σu² (and Σuuᵀ when asked) of the customers mapped into the request's box."""
    lower, upper = _box(node, payload)
    gram = _flag(payload, "gram")
    mechanism = releases.moments_mechanism(planned.noise_multiplier, dim=node.schema.dim, gram=gram)
    return Answer(
        mechanism.as_release(planned.name),
        lambda rng: clipped_moments(to_unit(node.model_space(), lower, upper), gram=gram),
        mechanism,
    )


def _displacements(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    """Per-cluster sums of displacements from the request's centres clipped to its radius,
    counts, and the histogram of distances to the own centre."""
    scaling, z = node.scaled(payload)
    centres = centres_field(payload, scaling.dim)
    radius = _radius(payload)
    edges = _array(payload, "distance_edges", ndim=1, open_end=True)
    if edges.size < 2 or edges[0] < 0 or np.any(np.diff(edges) <= 0):
        raise BadRequest("'distance_edges' must start at 0 or above and increase")
    mechanism = releases.displacement_mechanism(
        planned.noise_multiplier, radius=radius, dim=scaling.dim
    )
    return Answer(
        mechanism.as_release(planned.name),
        lambda rng: displacement_statistics(z, centres, radius=radius, distance_edges=edges),
        mechanism,
    )


def _profiles(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    """Per-segment sums of the features in original units mapped into the request's box
    (each customer in the segment the published centres give it), and counts."""
    scaling, z = node.scaled(payload)
    centres = centres_field(payload, scaling.dim)
    lower, upper = _box(node, payload)
    mechanism = releases.profiles_mechanism(planned.noise_multiplier, dim=scaling.dim)

    def compute(rng: np.random.Generator) -> dict[str, np.ndarray]:
        labels = nearest_centre(z, centres)
        return segment_value_sums(node.features, labels, len(centres), lower=lower, upper=upper)

    return Answer(mechanism.as_release(planned.name), compute, mechanism)


def _square_norm(node: MerchantNode, payload: Mapping[str, Any], planned: Release) -> Answer:
    """Σ‖z‖² over this merchant's customers, each z clipped to the request's radius: with the
    cluster statistics it gives the within-cluster cost, which choosing k needs."""
    _, z = node.scaled(payload)
    radius = _radius(payload)
    mechanism = releases.square_norm_mechanism(planned.noise_multiplier, radius=radius)
    return Answer(
        mechanism.as_release(planned.name),
        lambda rng: {"square_norm": np.array([np.sum(clip_rows_l2(z, radius) ** 2)])},
        mechanism,
    )


def centres_field(payload: Mapping[str, Any], dim: int) -> np.ndarray:
    """The request's centres (or cells): finite, ``dim`` wide, 1 to MAX_CENTRES of them (a
    server cannot make the merchant build an n × 10⁸ distance matrix)."""
    centres = _array(payload, "centres", ndim=2)
    if centres.shape[1] != dim or not 1 <= len(centres) <= MAX_CENTRES:
        raise BadRequest(
            f"'centres' has shape {centres.shape} for {dim} features (at most {MAX_CENTRES:,})"
        )
    return centres


def _radius(payload: Mapping[str, Any]) -> float:
    try:
        radius = float(payload["radius"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("field 'radius' must be a number") from None
    if not (math.isfinite(radius) and radius > 0):
        raise BadRequest("field 'radius' must be finite and positive")
    return radius


def _box(node: MerchantNode, payload: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The request's finite public box ``lower`` < ``upper``, one bound per feature."""
    lower, upper = _array(payload, "lower", ndim=1), _array(payload, "upper", ndim=1)
    if lower.shape != (node.schema.dim,) or upper.shape != lower.shape:
        raise BadRequest(f"'lower'/'upper' must hold {node.schema.dim} bounds each")
    if np.any(upper <= lower):
        raise BadRequest("'upper' must exceed 'lower' for every feature")
    return lower, upper


def _flag(payload: Mapping[str, Any], name: str) -> bool:
    value = payload.get(name, 0)
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise BadRequest(f"field {name!r} must be 0 or 1")


def _array(
    payload: Mapping[str, Any], name: str, *, ndim: int, open_end: bool = False
) -> np.ndarray:
    """A numeric array field, finite (with ``open_end``, the last entry may be +inf)."""
    value = payload.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != ndim or value.dtype.kind not in "fiu":
        raise BadRequest(f"field {name!r} must be a numeric {ndim}-d array")
    body = value[:-1] if open_end and value.size else value
    if not np.all(np.isfinite(body)) or (open_end and value.size and np.isnan(value[-1])):
        raise BadRequest(f"field {name!r} has non-finite values")
    return value.astype(np.float64)
