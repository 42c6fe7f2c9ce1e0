"""Short descriptive names for segments, from their standardized centres.

Standardized coordinates are z-scores against the whole federation, so "high" and
"low" are relative to the average customer. The e-commerce rules follow the personas
merchants recognise (the seed paper's segment table); any other feature set gets
"high X, low Y" names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HIGH, LOW = 0.5, -0.5


def _rules(z: dict[str, float]) -> str | None:
    get = lambda name: z.get(name, 0.0)  # noqa: E731 - a missing feature is average
    browse = max(get("browse_minutes"), get("pages_viewed"))
    if browse > HIGH and get("orders") < LOW:
        return "window shopper"
    if get("recency_days") > 1.0 and get("orders") < 0:
        return "dormant"
    if get("spend") > HIGH and get("orders") > HIGH:
        return "high-value loyal"
    if get("avg_order_value") > HIGH and get("orders") <= HIGH:
        return "occasional big spender"
    # Bargain hunters buy cheap, or skim many pages briefly (comparing prices).
    skims = get("pages_viewed") > HIGH and get("browse_minutes") < 0
    if get("orders") > 0 and (get("avg_order_value") < LOW or skims):
        return "bargain hunter"
    return None


def _generic(z: dict[str, float]) -> str:
    ranked = sorted(z.items(), key=lambda item: -abs(item[1]))[:2]
    parts = [
        f"{'high' if v > 0 else 'low'} {name.replace('_', ' ')}"
        for name, v in ranked
        if abs(v) > 0.25
    ]
    return ", ".join(parts) or "average"


def segment_names(features: Sequence[str], centres_standardized: np.ndarray) -> list[str]:
    """One unique, readable name per segment."""
    names: list[str] = []
    for centre in centres_standardized:
        z = dict(zip(features, (float(v) for v in centre), strict=True))
        name = _rules(z) or _generic(z)
        count = sum(1 for n in names if n == name or n.startswith(f"{name} #"))
        names.append(name if count == 0 else f"{name} #{count + 1}")
    return names
