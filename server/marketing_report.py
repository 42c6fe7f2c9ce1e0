"""report.md's marketing sections: standard RFM labels, lifetime value, what to do."""

from __future__ import annotations

from fedseg.server.actions import actions_markdown
from fedseg.server.model import SegmentModel
from fedseg.server.rfm import rfm_table


def lifetime_table(block: dict) -> str:
    """Per-segment BG/NBD + Gamma-Gamma figures (server/lifetime_value.py)."""
    lines = [
        f"Over the next {block['horizon_days']:.0f} days, per buying customer "
        "(BG/NBD + Gamma-Gamma fitted on DP cell counts; means from DP per-segment sums).",
        "",
        "| segment | buyers (noisy) | expected purchases | P(alive) | expected value |",
        "|---|---|---|---|---|",
    ]
    for row in block["segments"]:
        flag = "" if row.get("reliable", True) else " (too few buyers: mostly noise)"
        lines.append(
            f"| {row['segment']} | {row['buyers']:.0f} | {row['expected_purchases']:.3f} | "
            f"{row['p_alive']:.3f} | {row['expected_value']:.2f}{flag} |"
        )
    return "\n".join(lines)


def marketing_sections(model: SegmentModel) -> str:
    """The sections the model has blocks for, each ending in a blank line."""
    parts = []
    if model.extras.get("rfm"):
        parts.append(
            "## Standard labels (RFM)\n\nScores 1-5 from each centre's rank in the DP marginals "
            f"(docs/marketing.md).\n\n{rfm_table(model.extras['rfm'], model.names)}\n"
        )
    if model.extras.get("lifetime_value"):
        parts.append(f"## Lifetime value\n\n{lifetime_table(model.extras['lifetime_value'])}\n")
    if model.extras.get("actions"):
        parts.append(f"## What to do\n\n{actions_markdown(model.extras['actions'])}\n")
    return "\n".join(parts) + ("\n" if parts else "")
