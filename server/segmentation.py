"""The server's segmentation loop: describe → plan → statistics → private init → DP Lloyd.

Written against ``Transport`` only, so the same loop runs under every Flower runtime and in
tests without one. Before anything is released every merchant accepts the run's whole plan
(server/budget.py) or is left out; every noisy request is then charged to the server's
ledger with the release's mechanism (privacy/releases.py) before it is sent, and each
merchant charges its own ledger with the mechanism it builds itself.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from fedseg.privacy import releases
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.protocol.codes import describe as describe_code
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server import kmeans
from fedseg.server.aggregation import Aggregate, ReplySpec, RoundFailed, aggregate_plain
from fedseg.server.budget import run_plan
from fedseg.server.config import SegmentationConfig
from fedseg.server.transport import Payload, Reply, Transport

# An aggregator turns (task, payload, spec, nodes) into summed statistics; plain
# summation by default, secure aggregation or robust aggregation when configured.
Aggregator = Callable[[str, Payload, ReplySpec, Sequence[int]], Aggregate]

MIN_ROUNDS = 3  # Lloyd rounds before early stopping may apply


@dataclass
class Rounds:
    """What every round of a run shares: how to reach the merchants and what was done."""

    transport: Transport
    cfg: SegmentationConfig
    ledger: PrivacyLedger
    aggregate: Aggregator | None = None
    history: list[dict] = field(default_factory=list)
    request_ids: itertools.count = field(default_factory=itertools.count)
    members: tuple[int, ...] = ()  # every merchant connected when the run started
    left_out: dict[int, str] = field(default_factory=dict)  # merchant → why it takes no part
    noise: dict[str, float] = field(default_factory=dict)  # noise multiplier per release kind
    sizes: dict[int, tuple[float, float]] = field(default_factory=dict)  # node → (n̂, its σ)
    on_round: Callable[[dict], None] | None = None  # told of every round, e.g. to log it

    def record(self, entry: dict) -> None:
        """Keep one round's log entry (and tell ``on_round``)."""
        self.history.append(entry)
        if self.on_round is not None:
            self.on_round(entry)

    def gaussian_round(
        self, task: str, kind: str, payload: dict, mechanism: GaussianMechanism, spec: ReplySpec
    ) -> Aggregate:
        """A round releasing ``kind`` through ``mechanism`` (privacy/releases.py)."""
        release = mechanism.as_release(kind)
        return self.noisy_round(task, payload, spec, release=release, sigmas=mechanism.sigmas())

    def noisy_round(
        self,
        task: str,
        payload: dict,
        spec: ReplySpec,
        *,
        release: Release,
        sigmas: Mapping[str, float] | None = None,
    ) -> Aggregate:
        """One noisy request to the merchants, summed.

        The request names the planned release kind; merchants take its noise multiplier
        from the plan they accepted. The server's ledger is charged with ``release`` before
        anything is sent, unless the aggregator charges at its own point (secure
        aggregation, once the masked inputs are in). ``sigmas`` is the noise each merchant's
        reply part carries (none: the noise was added inside training); the aggregate's
        ``noise_sigmas`` say how much noise its sums carry.
        """
        # Connected merchants, asked afresh each round: a node the SuperLink has marked
        # offline is not waited for in every later round, but is listed with its status.
        connected = set(self.transport.node_ids())
        nodes = sorted(connected - set(self.left_out))
        request = dict(payload, release=release.name, request_id=next(self.request_ids))
        sigmas = dict(sigmas or dict.fromkeys(spec.shapes, 0.0))
        spec = replace(spec, sigmas=sigmas, request_id=request["request_id"])
        if not getattr(self.aggregate, "charges_ledger", False):
            self.ledger.charge(release)
        started = time.perf_counter()
        if self.aggregate is not None:
            agg = self.aggregate(task, request, spec, nodes, release=release)
        else:
            replies = self.transport.request(task, request, nodes, max_bytes=spec.max_bytes())
            agg = aggregate_plain(
                release.name, nodes, replies, spec, min_clients=self.cfg.min_clients
            )
        agg.log.seconds = time.perf_counter() - started
        for node in self.members:
            if node not in nodes:
                reason = self.left_out.get(node, "offline: the SuperLink no longer lists it")
                agg.log.rejected.setdefault(node, f"node {node}: {reason}")
        self.record(agg.log.to_dict())
        placement = releases.NoisePlacement(agg.noise_share)
        contributors = len(agg.log.contributors)
        noise = {p: placement.sigma_of_sum(s, contributors) for p, s in sigmas.items()}
        return replace(agg, noise_sigmas=noise)


@dataclass
class SegmentationFit:
    """What a segmentation fit produced (see server/model.py for the published model)."""

    scaling: FeatureScaling
    centres: np.ndarray
    sizes: np.ndarray
    marginals: dict
    plan: RunPlan


@dataclass
class SegmentationRun:
    """One federated DP K-means fit over ``rounds``."""

    rounds: Rounds
    rng: np.random.Generator
    warm_start: Mapping[str, Any] | None = None  # an earlier model.json, parsed
    statistics_from: Mapping[str, Any] | None = None  # reuse its scaler and marginals only
    _histograms: tuple[np.ndarray, np.ndarray] | None = None
    _square_norm: dict = field(default_factory=dict)

    @property
    def cfg(self) -> SegmentationConfig:
        return self.rounds.cfg

    def fit(self) -> SegmentationFit:
        """Run every round."""
        nodes = sorted(self.rounds.transport.node_ids())
        self.rounds.members = tuple(nodes)
        declaration = self._describe(nodes)
        earlier = self.warm_start or self.statistics_from
        plan = run_plan(self.cfg, histograms=earlier is None, init=self.warm_start is None)
        self._agree(plan, nodes)
        z = self.rounds.noise
        if earlier is not None:
            scaling = FeatureScaling.from_dict(earlier["scaler"])
            if list(scaling.names) != declaration["names"]:
                raise RoundFailed("the earlier model's features differ from the merchants'")
            marginals = earlier.get("marginals", {})
            if "square_norm" in marginals:
                self._square_norm = {"square_norm": float(marginals["square_norm"])}
            self._histograms = (
                np.asarray(marginals.get("counts")),
                np.asarray(marginals.get("edges")),
            )
        else:
            scaling = self._feature_scaling(declaration, z[releases.HISTOGRAMS])
            if releases.SQUARE_NORM in z:
                self._square_norm = self._square_norm_round(scaling, z[releases.SQUARE_NORM])
        if self.warm_start is not None:
            centres = np.asarray(self.warm_start["centroids_standardized"], dtype=np.float64)
        else:
            centres = self._initial_centres(scaling, z[releases.INIT])
        centres, sizes = self._lloyd(scaling, centres, z[releases.LLOYD])
        counts, edges = self._histograms
        marginals = {"counts": counts.tolist(), "edges": edges.tolist(), **self._square_norm}
        return SegmentationFit(scaling, centres, sizes, marginals, plan)

    # -- rounds ---------------------------------------------------------------------------

    def _describe(self, nodes: Sequence[int]) -> dict:
        """Public feature declarations; merchants that disagree with the majority are left out."""
        started = time.perf_counter()
        replies = self.rounds.transport.request("describe", {}, nodes)
        votes: dict[tuple, list[Reply]] = {}
        for r in replies:
            if r.error is None and r.payload and isinstance(r.payload.get("names"), list):
                votes.setdefault(tuple(r.payload["names"]), []).append(r)
        if not votes:
            reasons = [f"node {r.node_id}: {_reason(r)}" for r in replies[:3]]
            raise RoundFailed(
                f"describe: no merchant declared its features ({len(replies)} of {len(nodes)} "
                f"answered; {'; '.join(reasons) or 'none'})"
            )
        majority = max(votes.values(), key=len)[0].payload
        agreeing = tuple(r.node_id for r in max(votes.values(), key=len))
        # Merchants declaring other features are left out; silent ones may still join.
        for r in replies:
            if r.node_id not in agreeing and r.error is None:
                self.rounds.left_out[r.node_id] = "left out: declared other features (describe)"
        self.rounds.record(
            {"task": "describe", "asked": len(nodes), "contributors": list(agreeing),
             "seconds": time.perf_counter() - started}
        )  # fmt: skip
        return {
            "names": list(majority["names"]),
            "log": tuple(bool(v) for v in np.asarray(majority["log"])),
            "lower": np.asarray(majority["lower"], dtype=np.float64),
            "upper": np.asarray(majority["upper"], dtype=np.float64),
        }

    def _agree(self, plan: RunPlan, nodes: Sequence[int]) -> None:
        """Every merchant accepts the whole plan or is left out, before any release."""
        started = time.perf_counter()
        asked = [n for n in nodes if n not in self.rounds.left_out]
        replies = self.rounds.transport.request("plan", {"plan": plan.to_json()}, asked)
        accepted = [
            r.node_id for r in replies if r.error is None and (r.payload or {}).get("accepted") == 1
        ]
        answered = {r.node_id: _reason(r) for r in replies if r.node_id not in accepted}
        why = {
            n: answered.get(n, "no reply before the deadline") for n in asked if n not in accepted
        }
        rejected = {n: f"node {n}: {reason}" for n, reason in why.items()}
        for node, reason in why.items():
            self.rounds.left_out[node] = f"left out: did not accept the plan ({reason})"
        self.rounds.noise = {r.name: r.noise_multiplier for r in plan.releases}
        self.rounds.record(
            {"task": "plan", "asked": len(asked), "contributors": accepted,
             "rejected": {str(k): v for k, v in rejected.items()},
             "seconds": time.perf_counter() - started}
        )  # fmt: skip
        if len(accepted) < self.cfg.min_clients:
            reasons = "; ".join(list(rejected.values())[:3])
            raise RoundFailed(
                f"plan: only {len(accepted)} of {len(asked)} merchants accepted the run's plan, "
                f"at least {self.cfg.min_clients} needed; nothing was released ({reasons})"
            )

    def _feature_scaling(self, declaration: dict, z: float) -> FeatureScaling:
        edges = kmeans.histogram_edges(declaration["lower"], declaration["upper"], self.cfg.bins)
        mechanism = releases.histogram_mechanism(z, n_features=len(declaration["names"]))
        spec = ReplySpec(shapes={"counts": edges[:, 1:].shape}, sigmas={}, equal_row_totals=True)
        agg = self.rounds.gaussian_round(
            "feature_histograms", releases.HISTOGRAMS, {"edges": edges}, mechanism, spec
        )
        quantiles = (0.001, 0.999) if self.cfg.private else (0.0, 1.0)
        total_sigma = agg.noise_sigmas["counts"]
        scaling = kmeans.scaling_from_histograms(
            agg.sums["counts"],
            edges,
            names=tuple(declaration["names"]),
            log=declaration["log"],
            quantiles=quantiles,
            noise_sigma=total_sigma,
        )
        self._histograms = (kmeans.denoise_histograms(agg.sums["counts"], total_sigma), edges)
        # A merchant's row totals are its customer count plus noise of std σ·√(bins/d) on
        # their mean: later cluster counts must add up to it.
        bins, d = edges.shape[1] - 1, edges.shape[0]
        size_sigma = mechanism.sigmas()["counts"] * math.sqrt(bins / d)
        self.rounds.sizes = {node: (n, size_sigma) for node, n in agg.sizes.items()}
        return replace(scaling, radius=scaling.box_radius())  # box clipping enforces it

    def _square_norm_round(self, scaling: FeatureScaling, z: float) -> dict:
        """Noisy Σ‖z‖² over all customers (sensitivity R²), published with the marginals."""
        mechanism = releases.square_norm_mechanism(z, radius=scaling.radius)
        spec = ReplySpec(shapes={"square_norm": (1,)}, sigmas={})
        agg = self.rounds.gaussian_round(
            "square_norm", releases.SQUARE_NORM, scaling.to_payload(), mechanism, spec
        )
        return {"square_norm": float(agg.sums["square_norm"][0])}

    def _initial_centres(self, scaling: FeatureScaling, z: float) -> np.ndarray:
        counts, edges = self._histograms
        candidates = kmeans.sample_candidates(
            counts, edges, scaling, self.cfg.n_candidates, self.rng
        )
        for _ in range(self.cfg.init_rounds):
            agg = self._cluster_round(releases.INIT, scaling, candidates, z)
            sums, cell_counts = agg.sums["sums"], agg.sums["counts"]
            min_count = _min_count(agg)
            populated = cell_counts >= min_count
            candidates = np.where(
                populated[:, None], sums / np.maximum(cell_counts, 1e-12)[:, None], candidates
            )
        return kmeans.seed_centres(sums, cell_counts, self.cfg.k, min_count=min_count, rng=self.rng)

    def _lloyd(self, scaling: FeatureScaling, centres: np.ndarray, z: float):
        box = scaling.box()
        sizes = np.zeros(len(centres))
        for round_no in range(1, self.cfg.rounds + 1):
            agg = self._cluster_round(releases.LLOYD, scaling, centres, z)
            new, kept = kmeans.update_centres(
                centres, agg.sums["sums"], agg.sums["counts"], min_count=_min_count(agg), box=box
            )
            movement = float(np.max(np.linalg.norm(new - centres, axis=1)))
            centres, sizes = new, agg.sums["counts"]
            self.rounds.history[-1].update(
                round=round_no, movement=movement, empty=int((~kept).sum())
            )
            # Stop once centres move less than the noise in a centre estimate (after the
            # first rounds, which move far from any initialization).
            if round_no >= MIN_ROUNDS and movement < _centre_noise(agg, scaling, z):
                break
        return centres, sizes

    def _cluster_round(self, kind: str, scaling: FeatureScaling, centres, z: float) -> Aggregate:
        payload = {**scaling.to_payload(), "centres": np.asarray(centres, dtype=np.float64)}
        k, d = centres.shape
        mechanism = releases.cluster_mechanism(z, radius=scaling.radius, dim=d)
        spec = ReplySpec(
            shapes={"sums": (k, d), "counts": (k,)}, sigmas={}, max_norm=scaling.radius,
            sizes=self.rounds.sizes or None,
        )  # fmt: skip
        return self.rounds.gaussian_round("cluster_stats", kind, payload, mechanism, spec)


def _min_count(agg: Aggregate) -> float:
    """Clusters whose noisy count is below this are mostly noise (3σ of the summed noise)."""
    return max(3.0 * agg.noise_sigmas["counts"], 1.0)


def _centre_noise(agg: Aggregate, scaling: FeatureScaling, z: float) -> float:
    if z == 0:
        return 1e-9
    return (
        agg.noise_sigmas["sums"]
        * math.sqrt(scaling.dim)
        / max(float(np.min(agg.sums["counts"])), 1.0)
    )


def _reason(reply: Reply) -> str:
    """Why a merchant gave no usable answer, in the operator's words (codes only)."""
    if reply.error is not None:
        return describe_code(reply.error)
    return "no usable answer"
