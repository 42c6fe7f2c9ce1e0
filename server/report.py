"""``report.md``: the segment profile table (like the seed paper's) and the privacy report."""

from __future__ import annotations

from fedseg.server.marketing_report import marketing_sections
from fedseg.server.model import SegmentModel
from fedseg.server.validation import left_out_table

# How each feature is shown in the table: heading and number format.
_DISPLAY = {
    "browse_minutes": ("browse (min)", "{:.0f}"),
    "orders": ("orders", "{:.1f}"),
    "spend": ("spend", "{:.0f}"),
    "pages_viewed": ("pages", "{:.0f}"),
    "reviews": ("reviews", "{:.1f}"),
    "avg_order_value": ("avg order", "{:.0f}"),
    "recency_days": ("recency (d)", "{:.0f}"),
    "tenure_days": ("tenure (d)", "{:.0f}"),
}


def feature_cell(feature: str, value: float, unit: str = "") -> str:
    """A value in original units as the tables show it (fractions as percentages)."""
    if unit == "fraction" or (not unit and feature.startswith(("share_", "spend_share_"))):
        return f"{100 * value:.0f}%"
    return _DISPLAY.get(feature, (feature, "{:.3g}"))[1].format(value)


def feature_heading(feature: str, unit: str = "") -> str:
    """A feature's short column heading (``recency (d)``, ``basket (EUR)``)."""
    if feature in _DISPLAY:
        return _DISPLAY[feature][0]
    name = feature.replace("_", " ")
    return f"{name} ({unit})" if unit and unit != "fraction" else name


def segment_table(model: SegmentModel, *, min_size: float = 0.0) -> str:
    """Markdown table; segments whose noisy size is below ``min_size`` show no profile."""
    units = model.extras.get("units", {})
    heads = [feature_heading(f, units.get(f, "")) for f in model.features]
    lines = [
        "| segment | name | customers (noisy) | " + " | ".join(heads) + " |",
        "|---|---|---|" + "---|" * len(heads),
    ]
    for row in model.profiles():
        if row["size"] < min_size:
            cells = ["(suppressed: fewer than the threshold)"] + [""] * (len(heads) - 1)
        else:
            cells = [feature_cell(f, row[f], units.get(f, "")) for f in model.features]
        lines.append(
            f"| {row['segment']} | {row['name']} | {row['size']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def privacy_table(privacy: dict) -> str:
    lines = [
        f"Total ε = {privacy.get('epsilon', float('nan')):.4g} at δ = {privacy.get('delta', float('nan')):g} "
        f"({privacy.get('accountant', '?')} accountant; user-level: one customer at one merchant).",
        "",
        "| release | mechanism | noise multiplier | count | sampling rate | ε alone |",
        "|---|---|---|---|---|---|",
    ]
    for r in privacy.get("releases", []):
        rate = r.get("sampling_rate")
        lines.append(
            f"| {r['name']} | {r['mechanism']} | {r['noise_multiplier']:.4g} | {r['count']} | "
            f"{'' if rate is None else f'{rate:.4g}'} | {r.get('epsilon_alone', float('nan')):.4g} |"
        )
    return "\n".join(lines)


ROBUSTNESS = {
    "sum": "Aggregation: plain sums. Every reply was checked (shape, finiteness, the noise it "
    "may carry, counts against the merchant's own histograms), but a merchant that lies "
    "consistently — say, claims 100× its customers in every release — still moves the model; "
    "`--aggregation median` or `trimmed` bounds any one merchant's influence.",
    "median": "Aggregation: coordinate-wise weighted median of the merchants' estimates; "
    "merchants holding less than half of the capped weight cannot move a coordinate outside "
    "the honest range.",
    "trimmed": "Aggregation: weighted trimmed mean of the merchants' estimates (30% cut from "
    "each end).",
    "secure": "Aggregation: secure sums (the server saw only sums); each merchant's input was "
    "bounded before masking, and the unmasked sum was checked against what honest merchants "
    "could produce.",
}


def render_report(model: SegmentModel, *, min_size: float = 0.0) -> str:
    aggregation = ROBUSTNESS.get(str(model.extras.get("aggregation", "")), "")
    warnings = "".join(
        f"> **Warning:** {w}\n\n" for w in model.extras.get("noise", {}).get("warnings", [])
    )
    shown = (
        "Each row is the DP mean of the segment's members, in original units (the noise std "
        "of every value is in model.json, `profile_noise`)"
        if "profile_means" in model.extras
        else "Each row is the segment's centre mapped back to original units"
    )
    return (
        f"# fedseg segmentation: {model.k} segments\n\n"
        f"## Segments\n\n{warnings}{segment_table(model, min_size=min_size)}\n\n"
        f"{shown}; sizes carry Gaussian noise.\n\n"
        f"{marketing_sections(model)}"
        f"## Privacy\n\n{privacy_table(model.privacy)}\n\n"
        f"## Rounds\n\n{left_out_table(model.history)}\n\n{aggregation}\n"
    )
