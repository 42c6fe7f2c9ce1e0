"""Choosing k privately (the seed paper's FAQ): one DP fit per candidate k, all within ONE
total (ε, δ) budget, then a noisy cost curve and a suggested k.

Shared statistics, nested fits. The first fit (the largest k) releases the DP feature
statistics (ranges and moments) and initializes privately; every smaller k warm-starts (run_config
``warm-start``) from the next larger k's centres with the closest pair merged (Ward's
criterion, the pair whose merge raises the k-means cost least): it reuses that model's
scaling, statistics and last radius and spends its ε on Lloyd rounds and its profiles. All fits therefore cluster in
the SAME standardized space, so their costs are comparable; the statistics, released once,
can get a large share of the budget (``statistics_share``), which makes the scaling good;
and no fit for a small k starts from a fresh noisy initialization that can stall in a poor
local optimum (a fit of k+1 that split one segment in two merges back to it).

Budget. Every release is a plain Gaussian with noise multiplier z; these compose exactly as
one Gaussian whose 1/z² is the sum of theirs (a "precision"). ``plan_budget`` gives the shared
statistics ``statistics_share`` of the total precision and every fit the same init + Lloyd
plan, binary-searching the per-fit ε so that all planned releases, composed with
fedseg.privacy.accounting, stay within the total. After the fits, the releases recorded in
every model.json are composed again and checked (early stopping only ever spends less).

Cost curve (post-processing only; no extra release). The last DP Lloyd round released noisy
per-cluster counts n_j and moved each centre to (about) its members' mean c_j (up to the
displacement clipping), so for that round's assignment Σ_i ‖z_i − c_a(i)‖² = Σ_i ‖z_i‖² − Σ_j n_j ‖c_j‖². Σ‖z_i‖²/N is
estimated from the shared noisy marginals pushed through the shared scaler (the same for every
k, so its error shifts the whole curve, not its shape). The curve is W(k) / (N̂ · that): the
share of variance left unexplained by k segments; a running minimum over k removes bumps
from a fit that landed in a poor local optimum (the optimal cost never rises with k).

Rule. Suggested k = the smallest k whose next candidate improves the unexplained share by
less than ``min_gain`` (default 15 % relative; measured noisy curves gain ~12 % past
the planted k at ε = 2, the non-private curve ~8 %): W(k_next) > (1 − min_gain) W(k). If every step
improves more, the largest k is suggested.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fedseg.privacy import releases
from fedseg.privacy.accounting import Release, epsilon_spent
from fedseg.server.budget import noise_plan, planned_kinds
from fedseg.server.config import SegmentationConfig
from fedseg.server.model import SegmentModel

DEFAULT_MIN_GAIN = 0.15  # DP noise moves the curve by a few %: demand a clear gain
DEFAULT_STATISTICS_SHARE = 0.25
DEFAULT_SQUARE_NORM_SHARE = 0.02
# The largest k's private initialization seeds every fit (the smaller k merge its centres).
DEFAULT_INIT_SHARE = 0.07
# The shared statistics split like a single fit's (server/config.py: ranges 0.15, moments 0.10).
STATISTICS_PARTS = ((releases.RANGES, 0.6), (releases.MOMENTS, 0.4))
SHARE_KEYS = {releases.RANGES: "range-share", releases.MOMENTS: "moments-share",
              releases.INIT: "init-share", releases.PROFILES: "profiles-share",
              releases.SQUARE_NORM: "square-norm-share"}  # fmt: skip


PER_SEGMENT_KEYS = ("noise", "profile_means", "profile_noise", "rfm", "actions",
                    "lifetime_value", "recommender")  # fmt: skip


class KRangeError(ValueError):
    """A --k value that is neither an integer, a range "2-10" nor a list "2,4,6"."""


@dataclass(frozen=True)
class KChoice:
    """The noisy cost curve over k, the suggested k, and the budget actually spent."""

    ks: tuple[int, ...]
    unexplained: tuple[float, ...]  # W(k) / (N̂ · Σ‖z‖²/N), noisy, running minimum
    suggested_k: int
    epsilon_per_run: float
    epsilon_total: float
    epsilon_spent: float  # all runs' recorded releases composed
    delta: float
    min_gain: float

    def table(self) -> str:
        lines = ["| k | unexplained share (noisy) | gain vs previous k |", "|---|---|---|"]
        for i, (k, w) in enumerate(zip(self.ks, self.unexplained, strict=True)):
            previous = self.unexplained[i - 1] if i else 0.0
            gain = f"{1 - w / previous:+.1%}" if previous > 0 else ""
            mark = " ← suggested" if k == self.suggested_k else ""
            lines.append(f"| {k}{mark} | {w:.3f} | {gain} |")
        return "\n".join(lines)


@dataclass(frozen=True)
class KBudget:
    """run_config overrides for the statistics fit and for every other fit, and the plan."""

    first: dict[str, float]
    others: dict[str, float]
    planned: tuple[Release, ...]  # every fit's planned releases, all together


def parse_k_range(text: str) -> tuple[int, ...]:
    """ "5" → (5,); "2-10" → (2, …, 10); "2,4,8" → (2, 4, 8)."""
    try:
        if "-" in text:
            lo, hi = (int(p) for p in text.split("-", 1))
            ks = tuple(range(lo, hi + 1))
        else:
            ks = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise KRangeError(f"--k: expected 5, 2-10 or 2,4,8; got {text!r}") from None
    if not ks or len(set(ks)) != len(ks):
        raise KRangeError(f"--k: need distinct values, got {text!r}")
    if min(ks) < 2:
        raise KRangeError(f"--k: a segmentation needs at least 2 segments, got {text!r}")
    return tuple(sorted(ks))


def fit_releases(
    run_config: dict[str, Any], *, epsilon: float, init: bool = False
) -> list[Release]:
    """The releases of one fit that reuses the shared statistics, at ``epsilon``: Lloyd
    rounds only (warm-started), or with ``init`` also the private initialization."""
    cfg = SegmentationConfig.from_run_config({**run_config, "epsilon": epsilon})
    counts = {name: count for name, _, count in planned_kinds(cfg, statistics=False, init=init)}
    plan = noise_plan(cfg, statistics=False, init=init)
    return [Release(name, z, count=counts[name]) for name, z in plan.items()]


def _precision(releases: Sequence[Release]) -> float:
    return sum(r.count / r.noise_multiplier**2 for r in releases)


def plan_budget(
    run_config: dict[str, Any],
    *,
    runs: int,
    epsilon_total: float,
    delta: float,
    statistics_share: float = DEFAULT_STATISTICS_SHARE,
    square_norm_share: float = DEFAULT_SQUARE_NORM_SHARE,
    init_share: float = DEFAULT_INIT_SHARE,
) -> KBudget:
    """Split ``epsilon_total`` over the shared releases and ``runs`` fits (module docstring).

    Shares are of the total precision Σ 1/z²: ``statistics_share`` for the ranges and moments,
    ``square_norm_share`` for the Σ‖z‖² release (0: none), ``init_share`` for the largest
    k's initialization, the rest evenly over the fits' Lloyd rounds.
    """
    fits_share = 1 - statistics_share - square_norm_share - init_share
    if min(statistics_share, init_share) <= 0 or square_norm_share < 0 or fits_share <= 0:
        raise ValueError("statistics and init shares > 0, square_norm_share ≥ 0, sum < 1")
    init_rounds = SegmentationConfig.from_run_config(run_config).init_rounds

    def everything(eps: float) -> list[Release]:
        fits = fit_releases(run_config, epsilon=eps) * runs
        unit = _precision(fits) / fits_share  # the total precision
        shared = [(n, statistics_share * part) for n, part in STATISTICS_PARTS]
        shared.append((releases.SQUARE_NORM, square_norm_share))
        first = [Release(n, 1 / math.sqrt(s * unit)) for n, s in shared if s > 0]
        first.append(
            Release(releases.INIT, math.sqrt(init_rounds / (init_share * unit)),
                    count=init_rounds)
        )  # fmt: skip
        return first + fits

    lo, hi = epsilon_total / (4 * runs), epsilon_total
    while epsilon_spent(everything(lo), delta=delta) > epsilon_total:
        lo /= 2
        if lo < 1e-6:
            raise ValueError(f"cannot fit {runs} runs in ε={epsilon_total}")
    while hi / lo > 1.002:
        mid = math.sqrt(lo * hi)
        fits = epsilon_spent(everything(mid), delta=delta) <= epsilon_total
        lo, hi = (mid, hi) if fits else (lo, mid)
    planned = everything(lo)
    first = planned[: len(planned) - (runs - 1) * len(fit_releases(run_config, epsilon=lo))]
    total = _precision(first)
    shares = {SHARE_KEYS[r.name]: _precision([r]) / total for r in first if r.name in SHARE_KEYS}
    return KBudget(
        first={"epsilon": epsilon_spent(first, delta=delta), **shares},
        others={"epsilon": lo},
        planned=tuple(planned),
    )


def square_norm_per_customer(model: SegmentModel) -> float:
    """Σ‖z‖²/N: the DP release if the model has one, else from its noisy marginals.

    The marginal estimate pushes the noisy histograms through the scaler that was built
    from them, so it is ≈ d by construction and misses what denoising cut from the tails
    (measured 14 vs a true 19.6 on the default synthetic federation): use the release.
    """
    sc, marginals = model.scaling, model.extras.get("marginals") or {}
    if marginals.get("square_norm") is not None:
        return float(marginals["square_norm"]) / max(float(np.sum(model.segment_sizes)), 1.0)
    counts, edges = np.asarray(marginals.get("counts", [])), np.asarray(marginals.get("edges", []))
    if counts.ndim != 2 or counts.shape[0] != sc.dim:
        raise ValueError("the model has no noisy marginals to estimate Σ‖z‖² from")
    lower, upper, mean, scale = (
        np.asarray(v)[:, None] for v in (sc.lower, sc.upper, sc.mean, sc.scale)
    )
    z = (np.clip((edges[:, :-1] + edges[:, 1:]) / 2, lower, upper) - mean) / scale
    weights = np.maximum(counts, 0.0)
    per_feature = (weights * z**2).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    return float(per_feature.sum())


def unexplained_share(model: SegmentModel, *, square_norm: float | None = None) -> float:
    """Noisy within-cluster cost of the last round ÷ estimated total (module docstring).

    ``square_norm`` is Σ‖z‖²/N; by default the number of features (standardized data).
    """
    sizes = np.maximum(model.segment_sizes, 0.0)
    n_hat = max(float(sizes.sum()), 1.0)
    total = n_hat * (model.scaling.dim if square_norm is None else square_norm)
    between = float(sizes @ np.sum(model.centres_standardized**2, axis=1))
    return max(total - between, 0.0) / total


def suggest_k(ks: Sequence[int], unexplained: Sequence[float], *, min_gain: float) -> int:
    """Smallest k whose next candidate improves the unexplained share by < ``min_gain``."""
    for i in range(len(ks) - 1):
        if unexplained[i + 1] > (1.0 - min_gain) * unexplained[i]:
            return int(ks[i])
    return int(ks[-1])


def choose_k(
    data_dir: str | Path,
    run_config: dict[str, Any],
    ks: Sequence[int],
    *,
    epsilon_total: float,
    out_dir: str | Path | None = None,
    min_gain: float = DEFAULT_MIN_GAIN,
    statistics_share: float = DEFAULT_STATISTICS_SHARE,
    backend: str = "inprocess",
) -> KChoice:
    """Fit one DP model per k within ``epsilon_total`` and suggest k (module docstring)."""
    ks = tuple(sorted(ks))
    if not math.isfinite(epsilon_total):
        raise ValueError("choosing k privately needs a finite total ε")
    delta = float(run_config.get("delta", SegmentationConfig.delta))
    budget = plan_budget(run_config, runs=len(ks), epsilon_total=epsilon_total, delta=delta,
                         statistics_share=statistics_share)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fedseg-k-") as scratch:
        root = Path(out_dir) if out_dir else Path(scratch)
        capped = {"sim-epsilon-cap": epsilon_total, **run_config}  # each merchant: all fits
        models = fit_candidates(data_dir, capped, ks, budget, root=root, backend=backend)
    return k_choice(models, budget, epsilon_total=epsilon_total, delta=delta, min_gain=min_gain)


def fit_candidates(
    data_dir: str | Path,
    run_config: dict[str, Any],
    ks: Sequence[int],
    budget: KBudget,
    *,
    root: Path,
    backend: str = "inprocess",
) -> dict[int, SegmentModel]:
    """The largest k first, releasing the shared statistics; every smaller k warm-starts
    from the previous fit's centres merged down to k (module docstring)."""
    from fedseg.simulations.experiments.runner import simulate

    # One set of merchants' ledgers for every fit: each merchant caps the fits together at
    # the total ε, and every fit draws fresh noise (a merchant's noise streams are numbered
    # by its ledger, so fits sharing it never reuse one).
    models: dict[int, SegmentModel] = {}
    with tempfile.TemporaryDirectory(prefix="fedseg-k-ledgers-") as ledgers:
        for k in sorted(ks, reverse=True):
            extra = budget.first
            if models:
                start = merged_model(models[min(models)], k).save(root / f"k{k}-start.json")
                extra = {**budget.others, "warm-start": str(start)}
            config = {**run_config, **extra, "k": k}
            result = simulate(
                data_dir, config, out_dir=root / f"k{k}", backend=backend, evaluate=False,
                state_dir=ledgers,
            )  # fmt: skip
            models[k] = result.model
    return models


def merged_model(model: SegmentModel, k: int) -> SegmentModel:
    """``model`` with its closest centres merged (Ward) until k remain: post-processing."""
    from dataclasses import replace

    centres = [np.asarray(c, dtype=np.float64) for c in model.centres_standardized]
    sizes = [max(float(n), 1e-9) for n in model.segment_sizes]
    if not 1 <= k <= len(centres):
        raise ValueError(f"cannot merge {len(centres)} centres down to {k}")
    while len(centres) > k:
        pairs = [(a, b) for a in range(len(centres)) for b in range(a + 1, len(centres))]
        a, b = min(pairs, key=lambda p: _ward(centres, sizes, *p))
        total = sizes[a] + sizes[b]
        centres[a] = (sizes[a] * centres[a] + sizes[b] * centres[b]) / total
        sizes[a] = total
        del centres[b], sizes[b]
    # What describes each of the old segments does not describe the merged ones.
    extras = {key: v for key, v in model.extras.items() if key not in PER_SEGMENT_KEYS}
    return replace(model, centres_standardized=np.array(centres), segment_sizes=np.array(sizes),
                   extras=extras)  # fmt: skip


def _ward(centres: list[np.ndarray], sizes: list[float], a: int, b: int) -> float:
    """Increase of the k-means cost when clusters a and b become one."""
    weight = sizes[a] * sizes[b] / (sizes[a] + sizes[b])
    return weight * float(np.sum((centres[a] - centres[b]) ** 2))


def k_choice(
    models: dict[int, SegmentModel],
    budget: KBudget,
    *,
    epsilon_total: float,
    delta: float,
    min_gain: float = DEFAULT_MIN_GAIN,
    square_norm: float | None = None,
) -> KChoice:
    """Check the composed spend, build the noisy cost curve and apply the rule."""
    ks = tuple(sorted(models))
    spent = composed_spend(list(models.values()), delta=delta)
    if spent > epsilon_total * (1 + 1e-9):
        raise RuntimeError(f"the {len(ks)} runs spent ε={spent:.4f} > total {epsilon_total}")
    if square_norm is None:
        square_norm = square_norm_per_customer(models[ks[-1]])
    raw = [unexplained_share(models[k], square_norm=square_norm) for k in ks]
    unexplained = tuple(float(w) for w in np.minimum.accumulate(raw))
    return KChoice(
        ks=ks,
        unexplained=unexplained,
        suggested_k=suggest_k(ks, unexplained, min_gain=min_gain),
        epsilon_per_run=budget.others["epsilon"],
        epsilon_total=epsilon_total,
        epsilon_spent=spent,
        delta=delta,
        min_gain=min_gain,
    )


def composed_spend(models: Sequence[SegmentModel], *, delta: float) -> float:
    """ε of every release recorded in the models' privacy reports, composed (PLD)."""
    releases = [
        Release(
            r["name"],
            float(r["noise_multiplier"]),
            count=int(r["count"]),
            sampling_rate=r.get("sampling_rate"),
        )
        for m in models
        for r in m.privacy["releases"]
    ]
    return epsilon_spent(releases, delta=delta)
