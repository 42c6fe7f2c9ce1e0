"""The server's segmentation loop: statistics → private initialization → DP Lloyd rounds.

Written against ``Transport`` only, so the same loop runs under every Flower runtime
and in tests without one. Every noisy request is charged to the server's ledger before
it is sent; each merchant charges its own ledger before it answers.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server import kmeans
from fedseg.server.aggregation import Aggregate, ReplySpec, RoundFailed, aggregate_plain
from fedseg.server.budget import noise_plan
from fedseg.server.config import SegmentationConfig
from fedseg.server.transport import Payload, Reply, Transport

# An aggregator turns (task, payload, spec, nodes) into summed statistics; plain
# summation by default, secure aggregation when configured.
Aggregator = Callable[[str, Payload, ReplySpec, Sequence[int]], Aggregate]

MIN_ROUNDS = 3  # Lloyd rounds before early stopping may apply


@dataclass
class SegmentationRun:
    """One federated DP K-means fit: the inputs, and what the fit produced."""

    transport: Transport
    cfg: SegmentationConfig
    ledger: PrivacyLedger
    rng: np.random.Generator
    aggregate: Aggregator | None = None
    warm_start: Mapping[str, Any] | None = None  # an earlier model.json, parsed
    statistics_from: Mapping[str, Any] | None = None  # reuse its scaler and marginals only
    _square_norm: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    request_ids: itertools.count = field(default_factory=itertools.count)  # one noise stream each
    excluded: set[int] = field(default_factory=set)  # merchants declaring other features

    def fit(self) -> dict[str, Any]:
        """Run every round; returns the fitted state (see ``server.model``)."""
        declaration = self._describe(sorted(self.transport.node_ids()))
        earlier = self.warm_start or self.statistics_from
        z = noise_plan(self.cfg, histograms=earlier is None, init=self.warm_start is None)
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
            scaling = self._feature_scaling(declaration, z["feature_histograms"])
            if "square_norm" in z:
                self._square_norm = self._square_norm_round(scaling, z["square_norm"])
        if self.warm_start is not None:
            centres = np.asarray(self.warm_start["centroids_standardized"], dtype=np.float64)
        else:
            centres = self._initial_centres(scaling, z["init_cluster_stats"])
        centres, sizes = self._lloyd(scaling, centres, z["cluster_stats"])
        counts, edges = self._histograms
        return {
            "scaling": scaling,
            "centres": centres,
            "sizes": sizes,
            "history": self.history,
            "marginals": {"counts": counts.tolist(), "edges": edges.tolist(), **self._square_norm},
            "noise_plan": z,
        }

    # -- rounds ---------------------------------------------------------------------------

    def _describe(self, nodes: Sequence[int]) -> dict:
        """Public feature declarations; merchants that disagree with the majority are left out."""
        started = time.perf_counter()
        replies = self.transport.request("describe", {}, nodes)
        votes: dict[tuple, list[Reply]] = {}
        for r in replies:
            if r.error is None and r.payload and isinstance(r.payload.get("names"), list):
                votes.setdefault(tuple(r.payload["names"]), []).append(r)
        if not votes:
            reasons = [f"node {r.node_id}: {r.error or 'no feature names'}" for r in replies[:3]]
            raise RoundFailed(
                f"describe: no merchant declared its features ({len(replies)} of {len(nodes)} "
                f"answered; {'; '.join(reasons) or 'none'})"
            )
        majority = max(votes.values(), key=len)[0].payload
        agreeing = tuple(r.node_id for r in max(votes.values(), key=len))
        # Merchants declaring other features are left out; silent ones may still join.
        self.excluded = {r.node_id for group in votes.values() for r in group} - set(agreeing)
        self.history.append(
            {"task": "describe", "asked": len(nodes), "contributors": list(agreeing),
             "seconds": time.perf_counter() - started}
        )  # fmt: skip
        names = list(majority["names"])
        return {
            "names": names,
            "log": tuple(bool(v) for v in np.asarray(majority["log"])),
            "lower": np.asarray(majority["lower"], dtype=np.float64),
            "upper": np.asarray(majority["upper"], dtype=np.float64),
        }

    def _feature_scaling(self, declaration: dict, z: float) -> FeatureScaling:
        edges = kmeans.histogram_edges(declaration["lower"], declaration["upper"], self.cfg.bins)
        d = len(declaration["names"])
        sigma = z * math.sqrt(d)
        spec = ReplySpec(
            shapes={"counts": edges[:, 1:].shape}, sigmas={"counts": sigma}, equal_row_totals=True
        )
        agg = self._noisy_round(
            "feature_histograms", "feature_histograms", {"edges": edges}, z, spec
        )
        quantiles = (0.001, 0.999) if self.cfg.private else (0.0, 1.0)
        copies = 1 if self.cfg.noise == "distributed" else len(agg.log.contributors)
        total_sigma = sigma * math.sqrt(copies)
        scaling = kmeans.scaling_from_histograms(
            agg.sums["counts"],
            edges,
            names=tuple(declaration["names"]),
            log=declaration["log"],
            quantiles=quantiles,
            noise_sigma=total_sigma,
        )
        self._histograms = (kmeans.denoise_histograms(agg.sums["counts"], total_sigma), edges)
        return _with_radius(scaling)

    def _square_norm_round(self, scaling: FeatureScaling, z: float) -> dict:
        """Noisy Σ‖z‖² over all customers (sensitivity R²), published with the marginals."""
        payload = _scaling_payload(scaling)
        sigma = z * scaling.radius**2
        spec = ReplySpec(shapes={"square_norm": (1,)}, sigmas={"square_norm": sigma})
        agg = self._noisy_round("square_norm", "square_norm", payload, z, spec)
        return {"square_norm": float(agg.sums["square_norm"][0])}

    def _initial_centres(self, scaling: FeatureScaling, z: float) -> np.ndarray:
        counts, edges = self._histograms
        candidates = kmeans.sample_candidates(
            counts, edges, scaling, self.cfg.n_candidates, self.rng
        )
        for _ in range(self.cfg.init_rounds):
            agg, min_count = self._cluster_round("init_cluster_stats", scaling, candidates, z)
            sums, cell_counts = agg.sums["sums"], agg.sums["counts"]
            populated = cell_counts >= min_count
            candidates = np.where(
                populated[:, None], sums / np.maximum(cell_counts, 1e-12)[:, None], candidates
            )
        return kmeans.seed_centres(sums, cell_counts, self.cfg.k, min_count=min_count, rng=self.rng)

    def _lloyd(self, scaling: FeatureScaling, centres: np.ndarray, z: float):
        box = scaling.box()
        sizes = np.zeros(len(centres))
        for round_no in range(1, self.cfg.rounds + 1):
            agg, min_count = self._cluster_round("cluster_stats", scaling, centres, z)
            new, kept = kmeans.update_centres(
                centres, agg.sums["sums"], agg.sums["counts"], min_count=min_count, box=box
            )
            movement = float(np.max(np.linalg.norm(new - centres, axis=1)))
            centres, sizes = new, agg.sums["counts"]
            self.history[-1].update(round=round_no, movement=movement, empty=int((~kept).sum()))
            # Stop once centres move less than the noise in a centre estimate (after the
            # first rounds, which move far from any initialization).
            if round_no >= MIN_ROUNDS and movement < self._centre_noise(agg, scaling, z):
                break
        return centres, sizes

    def _centre_noise(self, agg: Aggregate, scaling: FeatureScaling, z: float) -> float:
        if z == 0:
            return 1e-9
        sigma_sums = self._aggregate_sigmas(z, scaling, len(agg.log.contributors))["sums"]
        return sigma_sums * math.sqrt(scaling.dim) / max(float(np.min(agg.sums["counts"])), 1.0)

    # -- plumbing -------------------------------------------------------------------------

    def _cluster_round(self, release: str, scaling: FeatureScaling, centres, z: float):
        payload = {
            **_scaling_payload(scaling),
            "centres": np.asarray(centres, dtype=np.float64),
            "sums_share": kmeans.sums_share(scaling.dim),
        }
        k, d = centres.shape
        per_client = self._aggregate_sigmas(z, scaling, 1)
        spec = ReplySpec(
            shapes={"sums": (k, d), "counts": (k,)},
            sigmas=per_client,
            max_norm=scaling.radius,
        )
        agg = self._noisy_round("cluster_stats", release, payload, z, spec)
        total_sigma = self._aggregate_sigmas(z, scaling, len(agg.log.contributors))["counts"]
        return agg, max(3.0 * total_sigma, 1.0)

    def _aggregate_sigmas(self, z: float, scaling: FeatureScaling, n_clients: int) -> dict:
        """Noise std of each part in the aggregate over ``n_clients`` (per client if 1)."""
        share = kmeans.sums_share(scaling.dim)
        copies = 1 if self.cfg.noise == "distributed" else n_clients
        root = math.sqrt(copies)
        return {
            "sums": z * scaling.radius / math.sqrt(share) * root,
            "counts": z / math.sqrt(1 - share) * root,
        }

    def _noisy_round(
        self, task: str, release: str, payload: dict, z: float, spec: ReplySpec
    ) -> Aggregate:
        return noisy_round(self, task, release, payload, z, spec)


def noisy_round(
    run, task: str, release: str, payload: dict, z: float, spec: ReplySpec
) -> Aggregate:
    """One noisy request to the merchants, summed: shared by every round of a run.

    ``run`` holds transport, cfg, ledger, aggregate, excluded, request_ids and history (a
    ``SegmentationRun`` or the recommender rounds that continue it). The server's ledger is
    charged before anything is sent, unless the aggregator charges at its own point.
    """
    # Connected merchants, asked afresh each round: a node the SuperLink has marked
    # offline is not waited for in every later round.
    nodes = sorted(set(run.transport.node_ids()) - run.excluded)
    request = dict(payload, release=release, noise_multiplier=z, request_id=next(run.request_ids))
    if not getattr(run.aggregate, "charges_ledger", False):
        run.ledger.charge(Release.of_request(request))
    started = time.perf_counter()
    if run.aggregate is not None:
        agg = run.aggregate(task, request, spec, nodes)
    else:
        replies = run.transport.request(task, request, nodes, max_bytes=spec.max_bytes())
        agg = aggregate_plain(release, nodes, replies, spec, min_clients=run.cfg.min_clients)
    agg.log.seconds = time.perf_counter() - started
    run.history.append(agg.log.to_dict())
    return agg


def _scaling_payload(scaling: FeatureScaling) -> dict:
    """The public scaling every merchant applies before computing a statistic."""
    return {
        "lower": np.asarray(scaling.lower),
        "upper": np.asarray(scaling.upper),
        "mean": np.asarray(scaling.mean),
        "scale": np.asarray(scaling.scale),
        "radius": float(scaling.radius),
    }


def _with_radius(scaling: FeatureScaling) -> FeatureScaling:
    """Use the box bound as the L2 radius: box clipping already enforces it, so no bias."""
    from dataclasses import replace

    return replace(scaling, radius=scaling.box_radius())
