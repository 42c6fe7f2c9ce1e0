"""Standard RFM labels for each segment, beside fedseg's own names (docs/segment_labels.md).

Each segment's centre (recency_days, orders, spend in original units) is scored 1-5 on
recency, frequency and monetary value by where it falls among all customers: its mid-rank
in the run's DP marginal histogram of that feature (a fifth of the customers per score, as
the R `rfm` package's quintiles; score 5 = most recent / most orders / most spend). Where a
model has no marginal for the feature, public schema-level thresholds stand in. The scores
then give the label of the R `rfm` package's rule table (first matching row wins, as
`rfm_segment` does, narrowest rows first; no match: "Hibernating" if R ≤ 2, else "Others") and the Shopify
`CustomerRfmGroup` read off the (R, FM) grid below. Only published values enter: the
centres and the DP marginals are post-processing of the run's releases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

RECENCY, FREQUENCY, MONETARY = "recency_days", "orders", "spend"
# Public fallback thresholds (score 1 → 5 boundaries) when a model has no marginal.
PUBLIC_THRESHOLDS = {
    RECENCY: (30.0, 90.0, 180.0, 365.0),  # days: ≤ 30 scores 5
    FREQUENCY: (1.0, 2.0, 4.0, 8.0),  # orders: > 8 scores 5
    MONETARY: (50.0, 100.0, 250.0, 1000.0),  # currency: > 1000 scores 5
}
# The R rfm package's segments (the ranges of its documented rule table): name, R, F, M.
# Narrowest rows first: in rfm's own order a first match never reaches Can't Lose Them (inside
# At Risk), New Customers or Promising (inside Potential Loyalist).
RFM_RULES: tuple[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]], ...] = (
    ("Champions", (4, 5), (4, 5), (4, 5)),
    ("Can't Lose Them", (1, 1), (4, 5), (4, 5)),
    ("New Customers", (4, 5), (1, 1), (1, 1)),
    ("Promising", (3, 4), (1, 1), (1, 1)),
    ("Loyal Customers", (2, 5), (3, 5), (3, 5)),
    ("Potential Loyalist", (3, 5), (1, 3), (1, 3)),
    ("Need Attention", (2, 3), (2, 3), (2, 3)),
    ("About To Sleep", (2, 3), (1, 2), (1, 2)),
    ("At Risk", (1, 2), (2, 5), (2, 5)),
    ("Lost", (1, 2), (1, 2), (1, 2)),
)


def shopify_group(r: int, f: int, m: int, *, has_orders: bool = True) -> str:
    """Shopify's CustomerRfmGroup from R and FM = round((F + M) / 2), following the
    descriptions Shopify gives each value (it publishes no thresholds)."""
    if not has_orders:
        return "PROSPECTS"
    fm = int(math.floor((f + m) / 2 + 0.5))
    if r == 5:
        return "CHAMPIONS" if fm >= 4 else "ACTIVE" if fm >= 2 else "NEW"
    if r == 4:
        return "LOYAL" if fm >= 4 else "ACTIVE" if fm >= 2 else "PROMISING"
    if r == 3:
        return "LOYAL" if fm >= 4 else "NEEDS_ATTENTION" if fm >= 2 else "PROMISING"
    if fm == 5:
        return "PREVIOUSLY_LOYAL"
    if fm >= 3:
        return "AT_RISK"
    return "ALMOST_LOST" if r == 2 else "DORMANT"


def rfm_label(r: int, f: int, m: int) -> str:
    """The R rfm package's segment name for scores (r, f, m)."""
    for name, (r0, r1), (f0, f1), (m0, m1) in RFM_RULES:
        if r0 <= r <= r1 and f0 <= f <= f1 and m0 <= m <= m1:
            return name
    return "Hibernating" if r <= 2 else "Others"


def mid_rank(value: float, counts: Sequence[float], edges: Sequence[float]) -> float:
    """Share of customers below ``value`` plus half of those at it, from a histogram
    (``edges`` one longer than ``counts``; mass spread evenly inside each bin)."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 0.0)
    edges = np.asarray(edges, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.5
    inside = np.clip((value - edges[:-1]) / np.diff(edges), 0.0, 1.0)
    return float(np.sum(counts * inside) / total)


def quintile_score(rank: float, *, lower_is_better: bool = False) -> int:
    """1-5 from a mid-rank in [0, 1]: each score holds a fifth of the customers."""
    rank = 1.0 - rank if lower_is_better else rank
    return int(np.clip(math.ceil(5.0 * rank - 1e-9), 1, 5))


def threshold_score(value: float, thresholds: Sequence[float], *, lower_is_better: bool) -> int:
    above = int(np.searchsorted(thresholds, value, side="left"))  # thresholds below value
    return 5 - above if lower_is_better else 1 + above


def segment_rfm(
    profiles: Sequence[Mapping[str, float]],
    *,
    features: Sequence[str],
    log: Sequence[bool],
    marginals: Mapping | None = None,
) -> list[dict] | None:
    """One row per segment: R, F, M scores, the rfm label and the Shopify group; None when
    the model lacks a recency, frequency or monetary feature."""
    if not {RECENCY, FREQUENCY, MONETARY} <= set(features):
        return None
    counts, edges = (marginals or {}).get("counts"), (marginals or {}).get("edges")
    rows = []
    for profile in profiles:
        scores = {}
        for name in (RECENCY, FREQUENCY, MONETARY):
            j, value = list(features).index(name), float(profile[name])
            lower = name == RECENCY
            if counts is not None and edges is not None and len(counts) == len(features):
                model_value = math.log1p(max(value, 0.0)) if log[j] else value
                rank = mid_rank(model_value, counts[j], edges[j])
                scores[name] = quintile_score(rank, lower_is_better=lower)
            else:
                scores[name] = threshold_score(
                    value, PUBLIC_THRESHOLDS[name], lower_is_better=lower
                )
        r, f, m = scores[RECENCY], scores[FREQUENCY], scores[MONETARY]
        rows.append({
            "segment": profile.get("segment"), "r": r, "f": f, "m": m,
            "rfm_label": rfm_label(r, f, m),
            "shopify_group": shopify_group(r, f, m, has_orders=float(profile[FREQUENCY]) >= 0.5),
            "scored_from": "dp_marginals" if counts is not None else "public_thresholds",
        })  # fmt: skip
    return rows


def rfm_table(rows: Sequence[Mapping], names: Sequence[str]) -> str:
    """Markdown: fedseg's name beside the standard labels."""
    lines = [
        "| segment | fedseg name | R | F | M | rfm label | Shopify CustomerRfmGroup |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, name in zip(rows, names, strict=True):
        lines.append(
            f"| {row['segment']} | {name} | {row['r']} | {row['f']} | {row['m']} | "
            f"{row['rfm_label']} | {row['shopify_group']} |"
        )
    return "\n".join(lines)
