"""Customer lifetime value per segment under DP: BG/NBD + Gamma-Gamma (docs/lifetime_value.md).

Round 1 (`lifetime_histograms`) sums every merchant's noisy counts of customers per public
cell of (T, x, t_x/T), of (x, m) and, per published segment, of a public activity measure;
the server drops cells the noise could explain (2.5σ of the sum), fits BG/NBD by grouped
maximum likelihood on the cells' probabilities (server/lifetime_cells.py), Gamma-Gamma on the
spend cells' representatives, and sets each segment's bound from its activity cells.
Round 2 (`lifetime_sums`) sends the fitted models and the published segmentation back; each
merchant sums its customers' expected purchases, P(alive) and expected value per segment,
each clipped to the segment's bound. Everything published is post-processing of these
two releases and the published centres.

The models are fitted once over all segments, not one per segment: segments are chosen on
recency and frequency, so a segment of one-time buyers holds no repeat purchase and its own
BG/NBD fit says they never buy again (0.005 expected purchases a year on CDNOW against 0.16
from the population model), while the population model conditioned on each customer's own
(x, t_x, T) is what `lifetimes` users compute per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fedseg.privacy import releases
from fedseg.privacy.published import lifetime
from fedseg.privacy.scaling import FeatureScaling
from fedseg.server import lifetime_cells
from fedseg.server.aggregation import ReplySpec
from fedseg.server.rounds import Rounds
from scipy.optimize import minimize

# Cells whose summed noisy count is below 2.5σ are dropped as noise: lower thresholds let
# noise cells in, higher ones drop the heavy buyers' sparse cells (BENCHMARKS.md).
NOISE_THRESHOLD = 2.5
# Several starts: from one start alone the BG/NBD likelihood of noisy cells can run off to a
# degenerate optimum (b → ∞, nobody ever drops out).
BGNBD_STARTS = ((1.0, 10.0, 1.0, 1.0), (0.3, 50.0, 0.6, 3.0), (0.5, 100.0, 0.3, 1.0))
PURCHASE_CAP = 25.0  # expected purchase days a year beyond this count as this (public)
# A segment's bound B_s: 1.5× the top of its activity bins holding more than 2σ of noisy
# buyers, between 0.5 and 20 (below the cap, so the tail keeps a share of the range).
ACTIVITY_THRESHOLD = 2.0
BOUND_FACTOR = 1.5
SMALLEST_BOUND, LARGEST_BOUND = 0.5, 20.0
TAIL_THRESHOLD = 3.0  # a segment's tail sum below 3σ is taken as 0
VALUE_CAP_FACTOR = 5.0  # the expected value's tail reaches 5× the segment's bound
RELIABLE_SIGMAS = 10.0  # a segment's figures are flagged unless its buyers exceed 10σ of the count
GAMMA_GAMMA_STARTS = ((2.0, 3.0, 20.0), (5.0, 4.0, 20.0))


def fit_bgnbd(x, t_x, age, weights, starts=BGNBD_STARTS) -> np.ndarray:
    """(r, α, a, b) maximizing Σ w·log L over cells (or customers, with weights 1)."""
    keep = np.asarray(weights) > 0
    x, t_x, age = (np.asarray(v, dtype=np.float64)[keep] for v in (x, t_x, age))
    ll = lambda p: lifetime.bgnbd_log_likelihood(p, x, t_x, age)  # noqa: E731
    return _fit(ll, np.asarray(weights)[keep], starts)


def fit_bgnbd_cells(counts, grid: lifetime.LifetimeGrid, starts=BGNBD_STARTS) -> np.ndarray:
    """(r, α, a, b) maximizing the grouped likelihood Σ n_c · log P(cell c | T) over the
    purchase cells (server/lifetime_cells.py); cells nobody can be in are ignored."""
    points = lifetime_cells.cell_points(grid)
    keep = grid.purchase_representatives()[3] & (np.asarray(counts) > 0)
    ll = lambda p: lifetime_cells.cell_log_probabilities(p, grid, points)[keep]  # noqa: E731
    return _fit(ll, np.asarray(counts, dtype=np.float64)[keep], starts)


def fit_gamma_gamma(x, m, weights, starts=GAMMA_GAMMA_STARTS) -> np.ndarray:
    """(p, q, v) maximizing Σ w·log L over customers with x ≥ 1 and m > 0."""
    keep = (np.asarray(weights) > 0) & (np.asarray(x) >= 1) & (np.asarray(m) > 0)
    x, m = (np.asarray(v, dtype=np.float64)[keep] for v in (x, m))
    ll = lambda p: lifetime.gamma_gamma_log_likelihood(p, x, m)  # noqa: E731
    return _fit(ll, np.asarray(weights)[keep], starts)


def _fit(log_likelihood, weights, starts) -> np.ndarray:
    """Maximum likelihood on log-parameters (so every parameter stays positive), as
    `lifetimes` does; from each start Nelder-Mead (robust to a poor start), then L-BFGS-B;
    the best of the starts wins."""
    weights = np.asarray(weights, dtype=np.float64)
    total = max(float(weights.sum()), 1e-12)

    def loss(log_params: np.ndarray) -> float:
        value = -np.sum(weights * log_likelihood(np.exp(log_params))) / total
        return float(value) if np.isfinite(value) else 1e10

    best = None
    for start in starts:
        first = minimize(loss, np.log(start), method="Nelder-Mead", options={"maxiter": 4000})
        result = minimize(loss, first.x, method="L-BFGS-B")
        if best is None or result.fun < best.fun:
            best = result
    return np.exp(best.x)


def denoised(counts: np.ndarray, sigma: float) -> np.ndarray:
    """Counts of the cells that stand clear of the noise; the rest are 0."""
    return np.where(counts > NOISE_THRESHOLD * sigma, counts, 0.0)


@dataclass(frozen=True)
class LifetimeModels:
    """The two fitted models and the cells they were fitted on (all post-processing)."""

    bgnbd: np.ndarray  # (r, α, a, b)
    gamma_gamma: np.ndarray  # (p, q, v)
    customers: float  # noisy number of buying customers in the kept cells

    @property
    def mean_order_value(self) -> float:
        p, q, v = self.gamma_gamma
        return float(p * v / (q - 1))

    @classmethod
    def from_histograms(
        cls, purchases: np.ndarray, spend: np.ndarray, sigmas: dict, grid: lifetime.LifetimeGrid
    ) -> LifetimeModels:
        w = denoised(purchases, sigmas["purchases"])
        bgnbd = fit_bgnbd_cells(w, grid)
        xs, m, possible = grid.spend_representatives()
        ws = np.where(possible, denoised(spend, sigmas["spend"]), 0.0)
        gg = fit_gamma_gamma(xs, m, ws)
        gg[1] = max(gg[1], 1.01)  # the mean order value p·v/(q − 1) needs q > 1
        _, _, _, possible = grid.purchase_representatives()
        return cls(bgnbd, gg, float(w[possible].sum()))


def purchase_bounds(
    activity: np.ndarray, sigma: float, horizon: float, grid: lifetime.LifetimeGrid
) -> np.ndarray:
    """Each segment's public bound B_s between the body and the tail of one customer's
    expected purchases, from its noisy activity counts (privacy/published/lifetime.py): from
    the segment's fullest bin, up the bins while they stand clear of the noise
    (ACTIVITY_THRESHOLD σ; a noise bin above the buyers cannot raise the bound unless it
    adjoins them), then BOUND_FACTOR × the last bin's upper edge over the horizon (the fitted
    model expects up to ~1.5× the prior's figure of the same customer); LARGEST_BOUND if the
    run reaches the open top bin. Nearly every buyer is below B_s, and B_s stays near the
    segment's own buyers, which keeps the body's noise (∝ B_s) small. Post-processing of the
    `lifetime_histograms` release."""
    counts = np.asarray(activity, dtype=np.float64).reshape(-1, grid.activity_bins)
    upper = np.asarray(grid.activity[1:]) * BOUND_FACTOR * horizon / 365.0
    bounds = []
    for row in counts:
        top = int(np.argmax(row))
        while top + 1 < len(row) and row[top + 1] > ACTIVITY_THRESHOLD * sigma:
            top += 1
        bounds.append(upper[top] if top < len(upper) else LARGEST_BOUND)
    return np.clip(bounds, SMALLEST_BOUND, LARGEST_BOUND)


@dataclass
class LifetimeValueRun:
    """The two lifetime-value rounds after the segmentation, within the run's budget."""

    rounds: Rounds
    grid: lifetime.LifetimeGrid = lifetime.LifetimeGrid()

    def fit(self, scaling: FeatureScaling, centres: np.ndarray, profiles: list[dict]) -> dict:
        """Both rounds; the published ``lifetime_value`` block of model.json."""
        z, horizon = self.rounds.noise, self.rounds.cfg.lifetime.horizon
        k, grid = len(centres), self.grid
        segmentation = {
            **scaling.to_payload(), "centres": np.asarray(centres, dtype=np.float64)
        }  # fmt: skip
        mechanism = releases.lifetime_histogram_mechanism(z[releases.LIFETIME_HISTOGRAMS])
        shapes = {
            "purchases": (grid.purchase_cells,), "spend": (grid.spend_cells,),
            "activity": (k * grid.activity_bins,),
        }  # fmt: skip
        agg = self.rounds.gaussian_round(
            "lifetime_histograms", releases.LIFETIME_HISTOGRAMS, segmentation, mechanism,
            ReplySpec(shapes=shapes, sigmas={}),
        )  # fmt: skip
        models = LifetimeModels.from_histograms(
            agg.sums["purchases"], agg.sums["spend"], agg.noise_sigmas, grid
        )
        bounds = purchase_bounds(agg.sums["activity"], agg.noise_sigmas["activity"], horizon, grid)
        order_values = [float(row.get("avg_order_value", 0.0)) for row in profiles]
        order_value = np.maximum(2 * models.mean_order_value, np.asarray(order_values))
        order_value = np.where(np.isfinite(order_value) & (order_value > 0), order_value, 1.0)
        caps = np.full(len(bounds), PURCHASE_CAP)
        limits = {
            "purchase_bounds": bounds, "purchase_caps": caps,
            "value_bounds": bounds * order_value,
            "value_caps": VALUE_CAP_FACTOR * bounds * order_value,
        }  # fmt: skip
        payload = {
            **segmentation, "bgnbd": models.bgnbd, "gamma_gamma": models.gamma_gamma,
            "horizon": np.array([horizon]), **limits,
        }  # fmt: skip
        mechanism = releases.lifetime_sums_mechanism(z[releases.LIFETIME_SUMS])
        spec = ReplySpec(shapes=dict.fromkeys(releases.LIFETIME_SUM_SHARES, (k,)), sigmas={})
        agg = self.rounds.gaussian_round(
            "lifetime_sums", releases.LIFETIME_SUMS, payload, mechanism, spec
        )
        published = publish(models, agg.sums, agg.noise_sigmas, limits, horizon)
        for row in published["segments"]:  # a sum over few buyers is mostly noise
            row["reliable"] = row["buyers"] >= RELIABLE_SIGMAS * agg.noise_sigmas["counts"]
        return published


def publish(models: LifetimeModels, sums: dict, sigmas: dict, limits: dict, horizon: float) -> dict:
    """Per-segment means from the noisy sums (sizes below 1 count as 1); a tail sum the noise
    could explain (below TAIL_THRESHOLD σ: a false tail in 0.13% of segments) counts as 0."""
    counts = np.maximum(sums["counts"], 1.0)

    def mean(part: str, bound: np.ndarray, cap: np.ndarray) -> np.ndarray:
        tail = sums[f"{part}_tail"]
        tail = np.where(tail > TAIL_THRESHOLD * sigmas[f"{part}_tail"], tail, 0.0)
        return np.maximum(sums[part] * bound + tail * (cap - bound), 0.0) / counts

    purchases = mean("purchases", limits["purchase_bounds"], limits["purchase_caps"])
    value = mean("value", limits["value_bounds"], limits["value_caps"])
    segments = [
        {
            "segment": s + 1,
            "buyers": float(max(sums["counts"][s], 0.0)),
            "expected_purchases": float(purchases[s]),
            "p_alive": float(np.clip(sums["alive"][s] / counts[s], 0.0, 1.0)),
            "expected_value": float(value[s]),
        }
        for s in range(len(counts))
    ]
    return {
        "horizon_days": horizon,
        "bgnbd": dict(zip(("r", "alpha", "a", "b"), map(float, models.bgnbd), strict=True)),
        "gamma_gamma": dict(zip(("p", "q", "v"), map(float, models.gamma_gamma), strict=True)),
        **{name: [float(v) for v in values] for name, values in limits.items()},
        "segments": segments,
    }
