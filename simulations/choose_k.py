"""Choosing k privately (the seed paper's FAQ): one DP fit per candidate k, all within ONE
total (ε, δ) budget, then a noisy cost curve and a suggested k.

Budget. Every fit has the same release plan (the plan does not depend on k), so the runs
together are m copies of one plan. ``per_run_epsilon`` binary-searches the per-run ε so that
the planned releases of all m runs, composed with fedseg.privacy.accounting (PLD), stay within
the total. Gaussian mechanisms compose like √m in noise, so each run gets far more than
ε_total / m (e.g. ε_total = 2 over 9 values of k: ≈ 0.55 per run, not 0.22). After the runs,
the releases actually recorded in every model.json are composed again and checked.

Cost curve (post-processing only; no extra release). The last DP Lloyd round released noisy
per-cluster sums S_j and counts n_j in the standardized space, and the model's centres are
c_j = S_j / n_j (up to box clipping and the tiny-cluster guard). For the assignment of that
round, Σ_i ‖z_i − c_{a(i)}‖² = Σ_i ‖z_i‖² − Σ_j n_j ‖c_j‖². The total Σ‖z_i‖² is estimated as
N̂ · d (features are standardized with the DP histogram means and scales, so each has
variance ≈ 1), with N̂ = Σ_j n_j. The curve is W(k) / (N̂ d): the share of variance left
unexplained by k segments.

Known limit (measured, see the report of issue 7): at ε_total = 2 over k = 2..10 each run gets
ε ≈ 0.61, and each run's DP feature scaling (10 % of that) standardizes poorly — Σ‖z‖²/N was
22–40 instead of d = 14 on the default synthetic federation — so N̂ d underestimates the total
and the noisy curve has no clear elbow at the planted k = 5. Sharing one scaling release across
all k (server change) and a DP release of Σ‖z‖² would fix both.

Rule. Suggested k = the smallest k whose next candidate improves the unexplained share by
less than ``min_gain`` (default 10 % relative): W(k_next) > (1 − min_gain) W(k). If every step
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
from fedseg.privacy.accounting import Release, epsilon_spent
from fedseg.server.config import SegmentationConfig
from fedseg.server.model import SegmentModel
from fedseg.server.segmentation import noise_plan

DEFAULT_MIN_GAIN = 0.10


class KRangeError(ValueError):
    """A --k value that is neither an integer, a range "2-10" nor a list "2,4,6"."""


@dataclass(frozen=True)
class KChoice:
    """The noisy cost curve over k, the suggested k, and the budget actually spent."""

    ks: tuple[int, ...]
    unexplained: tuple[float, ...]  # W(k) / (N̂ d), noisy
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
    if not ks or min(ks) < 1 or len(set(ks)) != len(ks):
        raise KRangeError(f"--k: need distinct values >= 1, got {text!r}")
    return tuple(sorted(ks))


def planned_releases(run_config: dict[str, Any], *, epsilon: float) -> list[Release]:
    """The releases one fit plans at total ``epsilon`` (server/segmentation.py noise_plan)."""
    cfg = SegmentationConfig.from_run_config({**run_config, "epsilon": epsilon})
    counts = {
        "feature_histograms": 1,
        "init_cluster_stats": cfg.init_rounds,
        "cluster_stats": cfg.rounds,
    }
    return [Release(name, z, count=counts.get(name, 1)) for name, z in noise_plan(cfg).items()]


def per_run_epsilon(
    run_config: dict[str, Any], *, runs: int, epsilon_total: float, delta: float
) -> float:
    """Largest per-run ε (within 0.5 %) whose ``runs`` composed plans spend ≤ ``epsilon_total``."""

    def composed(eps: float) -> float:
        plan = planned_releases(run_config, epsilon=eps)
        return epsilon_spent([r for r in plan for _ in range(runs)], delta=delta)

    lo, hi = epsilon_total / runs, epsilon_total
    if composed(lo) > epsilon_total:
        raise ValueError(f"cannot fit {runs} runs in ε={epsilon_total}")
    while hi / lo > 1.005:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if composed(mid) <= epsilon_total else (lo, mid)
    return lo


def unexplained_share(model: SegmentModel) -> float:
    """Noisy within-cluster cost of the last round ÷ estimated total (module docstring)."""
    sizes = np.maximum(model.segment_sizes, 0.0)
    n_hat = max(float(sizes.sum()), 1.0)
    total = n_hat * model.scaling.dim
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
    backend: str = "inprocess",
) -> KChoice:
    """Fit one DP model per k within ``epsilon_total`` and suggest k (module docstring)."""
    from fedseg.simulations.runner import simulate

    if not math.isfinite(epsilon_total):
        raise ValueError("choosing k privately needs a finite total ε")
    delta = float(run_config.get("delta", SegmentationConfig.delta))
    eps_run = per_run_epsilon(run_config, runs=len(ks), epsilon_total=epsilon_total, delta=delta)
    with tempfile.TemporaryDirectory(prefix="fedseg-k-") as scratch:
        root = Path(out_dir) if out_dir else Path(scratch)
        models = [
            simulate(
                data_dir,
                {**run_config, "k": k, "epsilon": eps_run},
                out_dir=root / f"k{k}",
                backend=backend,
                evaluate=False,
            ).model
            for k in ks
        ]
    spent = composed_spend(models, delta=delta)
    if spent > epsilon_total * (1 + 1e-9):
        raise RuntimeError(f"the {len(ks)} runs spent ε={spent:.4f} > total {epsilon_total}")
    unexplained = tuple(unexplained_share(m) for m in models)
    return KChoice(
        ks=tuple(ks),
        unexplained=unexplained,
        suggested_k=suggest_k(ks, unexplained, min_gain=min_gain),
        epsilon_per_run=eps_run,
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
