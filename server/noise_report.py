"""Honest output when noise dominates: predicted centre error, warnings, naming guard.

The last displacement release gives, per segment j, a noisy count n_j and the sums' noise
σ (known from the plan: z, the radius, the share and the noise placement); the centre
c_j + S_j/n_j then carries noise of expected norm σ·√d / n_j. Its distance histogram gives
the within-segment root-mean-square distance ρ. A segment whose predicted error is a large
fraction of ρ has a profile that is mostly noise: it is reported unnamed, and the run warns
with what would shrink the error. All of this is post-processing of released values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NAMEABLE = 0.25  # predicted centre error below this fraction of the segment's spread
WARN_COST = 0.10  # warn when noise is predicted to raise the k-means cost by 10 % or more


@dataclass(frozen=True)
class NoiseAssessment:
    centre_error: np.ndarray  # predicted L2 error of each centre (standardized units)
    relative_error: np.ndarray  # ÷ the within-segment RMS distance
    predicted_cost_increase: float  # Σ n_j err_j² / Σ n_j ρ²
    nameable: np.ndarray  # bool per segment
    warnings: tuple[str, ...]


def rms_distance(noisy_hist: np.ndarray, edges: np.ndarray) -> float:
    """Root-mean-square distance to the own centre from a (noisy) distance histogram."""
    counts = np.maximum(noisy_hist, 0.0)
    upper = np.where(np.isfinite(edges[1:]), edges[1:], edges[-2] * 2)
    mids = (edges[:-1] + upper) / 2
    return float(math.sqrt(max(counts @ mids**2, 1e-300) / max(counts.sum(), 1e-12)))


def assess_noise(
    counts: np.ndarray,
    *,
    sigma_sums: float,
    sigma_counts: float,
    dim: int,
    spread: float,
    noise: str,
    merchants: int,
) -> NoiseAssessment:
    """Predicted error per centre and the run's warnings (empty when noise is small)."""
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    error = sigma_sums * math.sqrt(dim) / n + spread * sigma_counts / n
    relative = error / max(spread, 1e-12)
    increase = float(np.sum(n * error**2) / max(np.sum(n) * spread**2, 1e-300))
    nameable = (relative < NAMEABLE) & (np.asarray(counts) > 3.0 * sigma_counts)
    return NoiseAssessment(error, relative, increase, nameable,
                           tuple(noise_warnings(relative, increase, noise=noise, merchants=merchants,
                                                dim=dim, k=len(n))))  # fmt: skip


def noise_warnings(
    relative: np.ndarray, increase: float, *, noise: str, merchants: int, dim: int, k: int
) -> list[str]:
    """What to change, in the order it helps most, when noise dominates a segment."""
    worst = float(np.max(relative))
    if increase < WARN_COST and worst < NAMEABLE:
        return []
    # error ∝ 1/ε (small ε), ∝ √d, ∝ k (segment sizes n/k), ∝ √merchants for local noise
    need = min(worst / NAMEABLE, 1e3)
    fixes = [f"about {need:.1f}× the ε"]
    fixes.append(f"fewer segments (k = {max(1, int(k / need))} instead of {k})")
    if dim > 2:
        fixes.append(f"fewer features (d = {max(1, int(dim / need**2))} instead of {dim})")
    if noise == "local" and merchants > 1:
        fixes.append(
            f"distributed noise with secure aggregation (÷{math.sqrt(merchants):.1f} noise)"
        )
    unnamed = int(np.sum(relative >= NAMEABLE))
    size = f"{worst:.0%} of" if worst < 10 else "more than 10× the size of"
    cost = f"+{increase:.0%}" if increase < 10 else "more than 10×"
    head = (
        f"noise dominates: predicted centre error up to {size} a segment's spread, "
        f"k-means cost {cost} from noise alone"
    )
    tail = f"; {unnamed} segment(s) left unnamed" if unnamed else ""
    return [f"{head}{tail}. To fix it use " + ", or ".join(fixes) + "."]
