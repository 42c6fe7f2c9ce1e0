"""Segment profiles: DP per-segment means in original units, from released sums.

Release ``segment_profiles`` (after the final centres are published): every merchant assigns
its customers with the published model and sends per-segment sums of v = (clip(x) − c)/h,
each feature clipped to the run's bounds in original units (c, h: centre and half-width), and
counts — L2 sensitivity √d for the sums, 1 for the counts. Means are c + h·Σv/n: the mean of
the members' clipped values, not a log-space centre mapped back through expm1. Shares of one
group are renormalized to sum to 100 %. Post-processing only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.scaling import FeatureScaling, unit_box


def original_bounds(scaling: FeatureScaling) -> tuple[np.ndarray, np.ndarray]:
    """The run's clip bounds in original units (expm1 of the log-scale ones)."""
    lower, upper = np.array(scaling.lower), np.array(scaling.upper)
    log = np.asarray(scaling.log, dtype=bool)
    lower[log], upper[log] = np.expm1(lower[log]), np.expm1(upper[log])
    return lower, upper


def profile_means(
    sums: np.ndarray, counts: np.ndarray, lower: np.ndarray, upper: np.ndarray,
    *, groups: dict[str, list[int]] | None = None,
) -> np.ndarray:  # fmt: skip
    """(k, d) per-segment means in original units; share groups sum to 1."""
    centre, half = unit_box(lower, upper)
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)[:, None]
    means = np.clip(centre + half * np.clip(sums / n, -1, 1), lower, upper)
    for columns in (groups or {}).values():
        block = np.maximum(means[:, columns], 0.0)
        total = block.sum(axis=1, keepdims=True)
        means[:, columns] = np.divide(block, total, out=np.zeros_like(block), where=total > 0)
    return means


def profile_rows(
    means: np.ndarray, sizes: np.ndarray, schema: FeatureSchema, *, nameable: Sequence[bool],
    names: Sequence[str],
) -> list[dict]:  # fmt: skip
    """Readable rows: segment, name (or why not), noisy size, value and unit per feature."""
    rows = []
    for j, (mean, size) in enumerate(zip(means, sizes, strict=True)):
        row = {"segment": j + 1, "size": int(max(round(float(size)), 0))}
        row["name"] = names[j] if nameable[j] else "(unnamed: profile mostly noise)"
        for f, value in zip(schema.features, mean, strict=True):
            row[f.name] = {"value": float(value), "unit": "%" if f.kind == "share" else f.unit}
            if f.kind == "share":
                row[f.name]["value"] = 100.0 * float(value)
        rows.append(row)
    return rows
