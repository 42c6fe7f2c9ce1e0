""" "What to do" per segment: items, price band and whether to spend promotion on it.

Computed only from what the run published (docs/marketing.md): the segment centres and their
RFM scores (server/rfm.py), the per-segment lifetime value when it was fitted
(server/lifetime_value.py), the recommender's DP item popularity per segment, and the public
item catalogue. Nothing here reads a merchant's data, so it is post-processing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

TOP_CATEGORIES = 3


def promotion_advice(rfm: Mapping, value_rank: int | None, p_alive: float | None) -> str:
    """The promotion rule, first match wins (value_rank 1 = highest expected value)."""
    r, f, m = rfm["r"], rfm["f"], rfm["m"]
    high_value = m >= 4 or (value_rank is not None and value_rank <= 2)
    if r <= 2 and high_value:
        return "spend: win-back offer now (high value, slipping away)"
    if p_alive is not None and p_alive < 0.3 and not high_value:
        return "don't spend: most have likely stopped buying; low-cost reminder only"
    if r >= 4 and f >= 4:
        return "reward, don't discount: loyalty perks, early access, cross-sell"
    if r >= 4 and f <= 2:
        return "small spend: second-purchase incentive to turn new buyers into regulars"
    if r <= 2 and m <= 2:
        return "don't spend: low-cost reactivation reminder only"
    return "nurture: regular campaigns, no special budget"


def segment_actions(
    profiles: Sequence[Mapping],
    rfm: Sequence[Mapping] | None,
    *,
    lifetime: Mapping | None = None,
    item_scores: np.ndarray | None = None,
    catalogue: pd.DataFrame | None = None,
) -> list[dict]:
    """One readable block per segment (see promotion_advice for the spending rule)."""
    values = _lifetime_rows(lifetime, len(profiles))
    ranks = _value_ranks(values)
    actions = []
    for s, profile in enumerate(profiles):
        row = {"segment": s + 1}
        labels = rfm[s] if rfm else None
        if labels is not None:
            row["label"] = labels["rfm_label"]
        if values[s] is not None:
            row["expected_value"] = values[s]["expected_value"]
            row["p_alive"] = values[s]["p_alive"]
        if item_scores is not None and catalogue is not None:
            row["top_categories"] = top_categories(item_scores[s], catalogue)
            band = price_band(item_scores[s], catalogue)
            if band is not None:
                row["price_band"] = band
        if "price_band" not in row and "avg_order_value" in profile:
            row["price_band"] = f"orders of about {profile['avg_order_value']:.0f} on average"
        if labels is not None:
            p_alive = values[s]["p_alive"] if values[s] is not None else None
            row["promotion"] = promotion_advice(labels, ranks[s], p_alive)
        row["text"] = _sentence(row)
        actions.append(row)
    return actions


def top_categories(scores: np.ndarray, catalogue: pd.DataFrame) -> list[str]:
    """Categories (or first genres) holding most of the segment's DP item popularity."""
    column = "category" if "category" in catalogue.columns else "genres"
    if column not in catalogue.columns:
        return []
    import pandas as pd  # only with a catalogue, which the caller has read with pandas

    labels = catalogue[column].fillna("").astype(str).str.split("|").str[0]
    mass = pd.Series(np.maximum(scores, 0.0)).groupby(labels.to_numpy()).sum()
    mass = mass[mass.index != ""].sort_values(ascending=False)
    return [str(c) for c in mass.index[:TOP_CATEGORIES] if mass[c] > 0]


def price_band(scores: np.ndarray, catalogue: pd.DataFrame) -> str | None:
    """The catalogue price quartile where the segment's popularity-weighted median item sits."""
    if "price" not in catalogue.columns:
        return None
    import pandas as pd

    price = pd.to_numeric(catalogue["price"], errors="coerce").to_numpy(dtype=np.float64)
    known = np.isfinite(price) & (np.maximum(scores, 0.0) > 0)
    if not known.any():
        return None
    order = np.argsort(price[known])
    weights = np.cumsum(np.maximum(scores, 0.0)[known][order])
    median = price[known][order][np.searchsorted(weights, weights[-1] / 2)]
    quartiles = np.nanquantile(price[np.isfinite(price)], [0.25, 0.5, 0.75])
    band = ("budget", "lower-mid", "upper-mid", "premium")[int(np.searchsorted(quartiles, median))]
    return f"{band} (median item price {median:.2f})"


def _lifetime_rows(lifetime: Mapping | None, k: int) -> list[dict | None]:
    if not lifetime:
        return [None] * k
    rows: list[dict | None] = [None] * k
    for row in lifetime.get("segments", []):
        if row.get("reliable", True):
            rows[int(row["segment"]) - 1] = row
    return rows


def _value_ranks(values: Sequence[dict | None]) -> list[int | None]:
    known = sorted((-v["expected_value"], s) for s, v in enumerate(values) if v is not None)
    ranks: list[int | None] = [None] * len(values)
    for rank, (_, s) in enumerate(known, start=1):
        ranks[s] = rank
    return ranks


def _sentence(row: Mapping) -> str:
    parts = [f"Segment {row['segment']}" + (f" ({row['label']})" if "label" in row else "")]
    if row.get("top_categories"):
        parts.append("offer " + ", ".join(row["top_categories"]))
    if "price_band" in row:
        parts.append("price: " + row["price_band"])
    if "expected_value" in row:
        parts.append(f"expected value {row['expected_value']:.2f} per buyer")
    if "promotion" in row:
        parts.append(row["promotion"])
    return "; ".join(parts) + "."


def actions_markdown(actions: Sequence[Mapping]) -> str:
    """One bullet per segment, for report.md."""
    return "\n".join(f"- {a['text']}" for a in actions)
