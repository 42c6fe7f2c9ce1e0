"""The segmentation fit: schema → plan → ranges → moments → initialization → DP Lloyd → profiles.

Every stage is one release the merchants compute (client/node.py) and the server post-
processes (server/ranges.py, standardize.py, init.py, lloyd.py, profiles.py,
noise_report.py); docs/segmentation.md gives the stages, their budget shares and why.

1. ``feature_ranges``: one histogram per feature over public bins (geometric where the
   schema leaves a bound unknown) → clip bounds for the moments.
2. ``feature_moments``: count, Σu, Σu² of the customers mapped into those bounds (and Σuuᵀ for
   a DP projection when d > PROJECT_ABOVE) → mean and scale of each feature.
3. ``init_displacements``: public Gaussian candidate cells, one displacement round →
   weighted k-means++ over the well-populated cells.
4. ``cluster_displacements`` × rounds: each customer adds its displacement from its own
   centre clipped to a radius r, so the sensitivity is a cluster's size; the next r is a
   quantile of the released distance histogram and never grows.
5. ``segment_profiles``: per-segment sums of the features in original units → the profiles
   the report shows, and the noise assessment says which are mostly noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from fedseg.privacy import releases
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server import init, lloyd, profiles, ranges, standardize
from fedseg.server.aggregation import Aggregate, ReplySpec, RoundFailed
from fedseg.server.budget import run_plan
from fedseg.server.config import SegmentationConfig
from fedseg.server.noise_report import NoiseAssessment, assess_noise, rms_distance
from fedseg.server.rounds import Rounds

PROJECT_ABOVE = 16  # d above this: the initialization works in a DP-PCA subspace of k dims
MAX_CANDIDATES_PER_K = 20
MIN_CELL_SIGMAS = 1.0  # an initial cell should hold this many σ of the sums' noise
# ... in a projection: clusters there fill whole cells, and fewer cells put more clusters
# in one cell (BENCHMARKS.md, high dimension)
MIN_CELL_SIGMAS_PROJECTED = 0.5
INIT_RADIUS = 1.0  # × √d: the initialization round's displacement radius
RADIUS_CAP = 2.0  # × √d: the first Lloyd radius at most
CELL_ERROR = 0.6  # a seed cell's predicted noise error ÷ the init radius, at most
CELL_ERROR_PROJECTED = 0.8  # ... in a projection, whose cells are half as full
NOISE_TO_SPREAD = 0.08  # a centre's predicted noise error ÷ the init's distance quantile
RADIUS_QUANTILE = 0.9  # of the distances to the own centre: the next Lloyd radius
UNCLIPPED = 1e12  # at ε = ∞ nothing is clipped (a mechanism still needs a finite bound)
CONVERGED = 1e-9  # at ε = ∞ Lloyd stops once no centre moves more than this


@dataclass
class SegmentationFit:
    """What a segmentation fit produced (see server/model.py for the published model)."""

    schema: FeatureSchema
    scaling: FeatureScaling  # the published map: log1p, known bounds, mean and scale
    centres: np.ndarray  # (k, d) standardized
    sizes: np.ndarray  # noisy customer counts of the last Lloyd round
    marginals: dict  # the denoised range histograms (and Σ‖z‖²), for labels and choose_k
    statistics: dict  # found bounds (model space), the last radius, n̂: for later runs
    plan: RunPlan
    profile_means: np.ndarray | None = None  # (k, d) DP per-segment means, original units
    profile_noise: np.ndarray | None = None  # (k, d) their noise std, original units
    assessment: NoiseAssessment | None = None


@dataclass
class SegmentationRun:
    """One federated DP K-means fit over ``rounds`` with the operator's ``schema``."""

    rounds: Rounds
    schema: FeatureSchema
    rng: np.random.Generator
    warm_start: Mapping[str, Any] | None = None  # an earlier model.json, parsed
    statistics_from: Mapping[str, Any] | None = None  # reuse its scaling and marginals only

    @property
    def cfg(self) -> SegmentationConfig:
        return self.rounds.cfg

    @property
    def dim(self) -> int:
        return self.schema.dim

    def fit(self) -> SegmentationFit:
        """Run every round."""
        nodes = sorted(self.rounds.transport.node_ids())
        self.rounds.members = tuple(nodes)
        self.rounds.describe(self.schema, nodes)
        earlier = self.warm_start or self.statistics_from
        # a projection needs the feature moments' Gram matrix: only in a fresh fit
        projected = earlier is None and self.dim > PROJECT_ABOVE
        plan = run_plan(
            self.cfg, statistics=earlier is None, init=self.warm_start is None, projected=projected
        )
        self.rounds.agree(plan, nodes)
        z = self.rounds.noise
        if earlier is not None:
            scaling, marginals, statistics = self._earlier(earlier)
            basis = variances = None
        else:
            found, degenerate, marginals = self._ranges(z[releases.RANGES])
            statistics = {"lower": found.lower, "upper": found.upper}
            scaling, basis, variances, n_hat = self._moments(found, degenerate, z[releases.MOMENTS])
            statistics["customers"] = n_hat
            if releases.SQUARE_NORM in z:
                marginals["square_norm"] = self._square_norm(scaling, z[releases.SQUARE_NORM])
        if self.warm_start is not None:
            centres = _centres_of(self.warm_start, self.cfg.k, self.dim)
            radius = float(statistics.get("radius", RADIUS_CAP * math.sqrt(self.dim)))
        else:
            centres, spread = self._initial_centres(
                scaling, statistics["customers"], basis, variances, z[releases.INIT]
            )
            radius = self._first_lloyd_radius(spread, statistics["customers"], z[releases.LLOYD])
        centres, last, radius = self._lloyd(scaling, centres, radius, z[releases.LLOYD])
        statistics["radius"] = radius
        statistics = {k: v.tolist() if isinstance(v, np.ndarray) else v
                      for k, v in statistics.items()}  # fmt: skip
        assessment = assess_noise(
            last.sums["counts"], sigma_sums=last.noise_sigmas["sums"],
            sigma_counts=last.noise_sigmas["counts"], dim=self.dim,
            spread=rms_distance(last.sums["distances"], lloyd.distance_edges(self.dim)),
            noise=self.cfg.noise, merchants=len(last.log.contributors),
        )  # fmt: skip
        means = noise = None
        if releases.PROFILES in z:
            means, noise = self._profiles(scaling, centres, statistics, z[releases.PROFILES])
        return SegmentationFit(
            self.schema, scaling, centres, last.sums["counts"], marginals, statistics, plan,
            profile_means=means, profile_noise=noise, assessment=assessment,
        )  # fmt: skip

    # -- stages ---------------------------------------------------------------------------

    def _ranges(self, z: float) -> tuple[ranges.FoundRanges, np.ndarray, dict]:
        """What the range histograms say per feature, the degenerate features and the
        marginals."""
        d = self.dim
        edges = ranges.range_edges(self.schema, self.cfg.range_bins)
        mechanism = releases.histogram_mechanism(z, n_features=d)
        spec = ReplySpec(shapes={"counts": edges[:, 1:].shape}, sigmas={}, equal_row_totals=True)
        agg = self.rounds.gaussian_round(
            "feature_histograms", releases.RANGES, {"edges": edges}, mechanism, spec
        )
        counts, sigma = agg.sums["counts"], agg.noise_sigmas["counts"]
        found = ranges.found_bounds(counts, edges, sigma, self.schema, private=self.cfg.private)
        # A merchant's row totals are its customer count plus noise of std σ·√(bins/d) on
        # their mean: later counts must add up to it.
        size_sigma = mechanism.sigmas()["counts"] * math.sqrt((edges.shape[1] - 1) / d)
        self.rounds.sizes = {node: (n, size_sigma) for node, n in agg.sizes.items()}
        denoised = ranges.denoise_histograms(counts, sigma) if sigma > 0 else counts
        marginals = {"counts": denoised.tolist(), "edges": edges.tolist()}
        degenerate = self.cfg.private & ranges.degenerate_columns(
            counts, edges, sigma, found.lower, found.upper
        )
        return found, degenerate, marginals

    def _moments(self, found: ranges.FoundRanges, degenerate: np.ndarray, z: float):
        """The published scaling (known bounds only, mean and scale from the DP moments),
        the DP projection when d > PROJECT_ABOVE, and the noisy customer count."""
        d, project = self.dim, self.dim > PROJECT_ABOVE
        mechanism = releases.moments_mechanism(z, dim=d, gram=project)
        shapes = {"count": (1,), "sum": (d,), "square": (d,)}
        if project:
            shapes["second"] = (d, d)
        lower, upper = found.lower, found.upper
        payload = {"lower": lower, "upper": upper, "gram": int(project)}
        agg = self.rounds.gaussian_round(
            "feature_moments", releases.MOMENTS, payload, mechanism, ReplySpec(shapes, sigmas={})
        )
        scaling = standardize.scaling_from_moments(
            agg.sums, lower, upper, names=self.schema.names, log=self.schema.log,
            sigma_second=agg.noise_sigmas["square"], sigma_sum=agg.noise_sigmas["sum"],
            fallback_scale=found.scale, fallback_whole=found.whole,
            location=found.location, location_var=found.location_var,
        )  # fmt: skip
        known_lo, known_hi = self.schema.model_bounds()
        clustering = standardize.clustering_scaling(
            scaling, known_lo, known_hi, degenerate=degenerate
        )
        basis = variances = None
        if project:  # u lives in the found box; the projection is in the published space
            basis, variances = standardize.projection_from_moments(
                agg.sums, replace(scaling, scale=clustering.scale), min(self.cfg.k, d),
                sigma_second=agg.noise_sigmas["second"],
            )  # fmt: skip
        scaling = clustering
        return scaling, basis, variances, max(float(agg.sums["count"][0]), 1.0)

    def _square_norm(self, scaling: FeatureScaling, z: float) -> float:
        """Noisy Σ‖z‖² over all customers, z clipped to RADIUS_CAP·√d (choose_k's cost curve)."""
        radius = RADIUS_CAP * math.sqrt(self.dim)
        mechanism = releases.square_norm_mechanism(z, radius=radius)
        payload = {**scaling.to_payload(), "radius": radius}
        spec = ReplySpec(shapes={"square_norm": (1,)}, sigmas={})
        agg = self.rounds.gaussian_round(
            "square_norm", releases.SQUARE_NORM, payload, mechanism, spec
        )
        return float(agg.sums["square_norm"][0])

    def _initial_centres(self, scaling, n_hat: float, basis, variances, z: float):
        """k centres from over-complete candidate cells, and the 95 % quantile of the
        customers' distances to their cells (at most the initialization's radius)."""
        d, k = self.dim, self.cfg.k
        r0 = INIT_RADIUS * math.sqrt(d)
        probe = self.rounds.expected_noise(releases.displacement_mechanism(z, radius=r0, dim=d))
        per_cell = MIN_CELL_SIGMAS_PROJECTED if basis is not None else MIN_CELL_SIGMAS
        m = init.candidate_count(n_hat, k, per_cell * probe["sums"], most=MAX_CANDIDATES_PER_K * k)
        cells = init.gaussian_candidates(m, d, self.rng, basis=basis, variances=variances)
        radius = r0
        planned = next(r.count for r in self.rounds.plan.releases if r.name == releases.INIT)
        split_round = planned - 1 if planned > self.cfg.init_rounds else -1  # the extra one
        counts, kept = np.zeros(m), np.zeros(m, dtype=bool)
        for round_no in range(planned):
            if round_no == split_round:  # split the fullest cells (at least k)
                fullest = np.argsort(counts)[::-1][: max(int(kept.sum()), k)]
                cells = init.split_cells(cells[fullest], self.rng, basis=basis)
                m = len(cells)
            agg = self._displacement_round(releases.INIT, scaling, cells, radius, z)
            counts, min_count = agg.sums["counts"], _min_count(agg)
            moved, kept = lloyd.displacement_update(
                cells, agg.sums["sums"], agg.sums["counts"], min_count=min_count, max_step=radius
            )
            if basis is not None:  # candidates drawn in the DP-PCA subspace: shrink to them
                moved = init.shrink_steps(
                    cells, moved, agg.sums["counts"], sigma_sums=agg.noise_sigmas["sums"]
                )
            cells = moved
            self.rounds.history[-1].update(cells=m, kept=int(kept.sum()), radius=radius)
            radius = _next_radius(agg, d, 0.95, cap=r0)
        # A seed cell's noise error σ_sums·√d / count should be within CELL_ERROR of r0: a
        # cell of a few dozen customers in d ≈ 60 moves by noise about as far as the data are
        # wide, and k-means++ seeded from such cells put 8 of digits' 10 centres outside it.
        cell_error = CELL_ERROR_PROJECTED if basis is not None else CELL_ERROR
        clean = init.clean_cell_count(agg.noise_sigmas["sums"], d, r0, cell_error)
        centres = init.seed_from_cells(cells, agg.sums["counts"], k,
                                       min_count=max(min_count, clean), rng=self.rng)  # fmt: skip
        return centres, radius

    def _first_lloyd_radius(self, spread: float, n_hat: float, z: float) -> float:
        """``spread`` (the initialization's 95 % distance quantile) × a factor from 1.5 down
        to 0.5, so that a typical centre's predicted noise error (σ of the Lloyd sums at
        radius r, × √d, ÷ n̂/k customers) stays within NOISE_TO_SPREAD of the spread; at most
        RADIUS_CAP·√d. Everything here is public or released: the plan's σ, k, d and n̂.

        A smaller radius cuts the noise in proportion and leaves a symmetric cluster's centre
        a fixed point; a few hundred customers per cluster (small tables at ε = 8) need it,
        tens of thousands do not (the factor stays 1.5)."""
        d, k = self.dim, self.cfg.k
        unit = self.rounds.expected_noise(releases.displacement_mechanism(z, radius=1.0, dim=d))
        radius = lloyd.noise_limited_radius(
            spread, unit["sums"], dim=d, per_cluster=n_hat / k, noise_to_spread=NOISE_TO_SPREAD
        )
        return min(radius, RADIUS_CAP * math.sqrt(d))

    def _lloyd(self, scaling, centres: np.ndarray, radius: float, z: float):
        """DP Lloyd rounds; returns the centres, the last round's aggregate and radius."""
        private = self.cfg.private
        planned = next(r.count for r in self.rounds.plan.releases if r.name == releases.LLOYD)
        for round_no in range(1, planned + 1):
            r = radius if private else UNCLIPPED
            agg = self._displacement_round(releases.LLOYD, scaling, centres, r, z)
            new, kept = lloyd.displacement_update(
                centres, agg.sums["sums"], agg.sums["counts"], min_count=_min_count(agg),
                max_step=r,
            )  # fmt: skip
            movement = float(np.max(np.linalg.norm(new - centres, axis=1)))
            self.rounds.history[-1].update(
                round=round_no, radius=r, movement=movement, empty=int((~kept).sum())
            )
            centres = new
            if private:
                radius = _next_radius(agg, self.dim, RADIUS_QUANTILE, cap=radius)
            elif movement < CONVERGED:
                break
        return centres, agg, radius

    def _displacement_round(self, kind: str, scaling, centres, radius: float, z: float):
        k, d = centres.shape
        payload = {**scaling.to_payload(), "centres": np.asarray(centres, dtype=np.float64),
                   "radius": float(radius), "distance_edges": lloyd.distance_edges(d)}  # fmt: skip
        mechanism = releases.displacement_mechanism(z, radius=radius, dim=d)
        spec = ReplySpec(
            shapes={"sums": (k, d), "counts": (k,), "distances": (lloyd.DISTANCE_BINS,)},
            sigmas={}, max_norm=radius, sizes=self.rounds.sizes or None,
        )  # fmt: skip
        return self.rounds.gaussian_round("cluster_displacements", kind, payload, mechanism, spec)

    def _profiles(self, scaling, centres, statistics: Mapping, z: float):
        """DP per-segment means in original units (members' clipped values), and the noise
        std of each (post-processing: σ of the sums × the box's half-width ÷ the count)."""
        k, d = centres.shape
        found = replace(scaling, lower=tuple(statistics["lower"]),
                        upper=tuple(statistics["upper"]))  # fmt: skip
        lower, upper = profiles.original_bounds(found)
        payload = {**scaling.to_payload(), "centres": np.asarray(centres, dtype=np.float64),
                   "lower": lower, "upper": upper}  # fmt: skip
        mechanism = releases.profiles_mechanism(z, dim=d)
        spec = ReplySpec(shapes={"sums": (k, d), "counts": (k,)}, sigmas={},
                         max_norm=math.sqrt(d), sizes=self.rounds.sizes or None)  # fmt: skip
        agg = self.rounds.gaussian_round(
            "segment_profiles", releases.PROFILES, payload, mechanism, spec
        )
        sums, counts = agg.sums["sums"], agg.sums["counts"]
        means = profiles.profile_means(sums, counts, lower, upper, groups=self.schema.groups())
        half = (upper - lower) / 2
        noise = agg.noise_sigmas["sums"] * half[None, :] / np.maximum(counts, 1.0)[:, None]
        return means, noise

    def _earlier(self, model: Mapping[str, Any]) -> tuple[FeatureScaling, dict, dict]:
        """An earlier model's scaling, marginals and statistics (warm start, statistics-from)."""
        try:
            scaling = FeatureScaling.from_dict(model["scaler"])
            statistics = dict(model["statistics"])
            for part in ("lower", "upper", "customers"):
                statistics[part]  # noqa: B018 - present, or the model is too old
        except (KeyError, TypeError, ValueError):
            raise RoundFailed(
                "the earlier model has no scaler and statistics of this fedseg version: "
                "fit afresh (without warm-start or statistics-from)"
            ) from None
        if scaling.names != self.schema.names:
            raise RoundFailed("the earlier model's features differ from the run's schema")
        return scaling, dict(model.get("marginals", {})), statistics


def _centres_of(model: Mapping[str, Any], k: int, d: int) -> np.ndarray:
    centres = np.asarray(model.get("centroids_standardized"), dtype=np.float64)
    if centres.shape != (k, d) or not np.all(np.isfinite(centres)):
        raise RoundFailed(f"the earlier model's centres are not {k} × {d} finite numbers")
    return centres


def _next_radius(agg: Aggregate, dim: int, q: float, *, cap: float) -> float:
    """The ``q`` distance quantile, never above ``cap``: a radius only shrinks, since
    centres only get closer to their customers (and a noisy histogram's tail is noise)."""
    edges = lloyd.distance_edges(dim)
    found = lloyd.distance_quantile(agg.sums["distances"], edges, agg.noise_sigmas["distances"], q)
    return min(max(found, 1e-6), cap)


def _min_count(agg: Aggregate) -> float:
    """Clusters whose noisy count is below this are mostly noise (3σ of the summed noise)."""
    return max(3.0 * agg.noise_sigmas["counts"], 1.0)
