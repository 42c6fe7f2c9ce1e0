"""What the `fedseg` commands print for people: rich tables of the key figures.

Scripts read the files (model.json, metrics.json, results.csv) or ``--json``; these tables
are for reading and may change. Tables go to stdout; what loading kept and dropped goes to
stderr, so ``--json`` output stays one JSON document.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from fedseg.server.model import SegmentModel
from fedseg.server.report import feature_cell, feature_heading
from fedseg.simulations.cli.inputs import MerchantTable
from fedseg.simulations.reports.html_report import format_number
from rich.console import Console
from rich.table import Table

# Features shown in the terminal's segment table when the model has them (all: report.md).
KEY_FEATURES = ("orders", "spend", "avg_order_value", "recency_days", "browse_minutes")
MOST_FEATURES = 5
# The sweep's terminal table: what ε costs, in the model's own terms.
SWEEP_COLUMNS = ("setting", "epsilon", "runs", "epsilon_spent", "cost_ratio_model_space", "ari",
                 "nmi", "disagreement", "empty_clusters", "recommender.recall_at_20",
                 "recommender.ndcg_at_10_full", "wall_s")  # fmt: skip
MOST_LOAD_ROWS = 12  # merchants listed one by one; the rest are summed (all with problems)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def load_table(tables: Sequence[MerchantTable], *, title: str = "Merchant data") -> Table:
    """One row per merchant table: rows read, kept, dropped (by reason), customers."""
    table = Table(title=title, title_justify="left")
    for heading in ("merchant", "rows read", "kept", "customers"):
        table.add_column(heading, justify="left" if heading == "merchant" else "right")
    table.add_column("dropped, and why", overflow="fold")
    clean = [t for t in tables if t.report and not t.report.dropped]
    shown = [t for t in tables if t not in clean] + clean
    listed = shown if len(shown) <= MOST_LOAD_ROWS else shown[: MOST_LOAD_ROWS - 1]
    for t in listed:
        if t.report is None:
            table.add_row(t.path.stem, "", "", "0", f"[red]not used: {t.problem}")
            continue
        r = t.report
        table.add_row(t.path.stem, f"{r.rows_read:,}", f"{r.rows_kept:,}", f"{r.n_users:,}",
                      _dropped(r.dropped, r.first_rows))  # fmt: skip
    rest = [t for t in shown if t not in listed]
    if rest:
        reports = [t.report for t in rest if t.report]
        table.add_row(
            f"{len(rest)} more", f"{sum(r.rows_read for r in reports):,}",
            f"{sum(r.rows_kept for r in reports):,}", f"{sum(r.n_users for r in reports):,}", "",
        )  # fmt: skip
    return table


def report_lines(tables: Sequence[MerchantTable]) -> None:
    """Each table's notes beyond the counts (aliases, time window, removed columns), once."""
    notes = {line for t in tables if t.report for line in t.report.summary().splitlines()[1:]}
    for line in sorted(n for n in notes if not n.strip().startswith("dropped:")):
        err.print(line.strip(), markup=False)


def _dropped(dropped: Mapping[str, int], first_rows: Mapping[str, int]) -> str:
    parts = []
    for reason, count in dropped.items():
        row = first_rows.get(reason)
        parts.append(f"{count:,} {reason}" + (f" (first at row {row})" if row else ""))
    return ", ".join(parts) or "none"


def segment_table(model: SegmentModel) -> Table:
    """Segments with their noisy sizes and a few key features in original units."""
    features = [f for f in KEY_FEATURES if f in model.features] or list(model.features)
    features = features[:MOST_FEATURES]
    rfm = {row["segment"]: row for row in model.extras.get("rfm") or []}
    caption = "members' DP means in original units; sizes and values carry DP noise"
    if len(features) < len(model.features):
        caption += f"; all {len(model.features)} features in report.md"
    table = Table(title=f"{model.k} segments", title_justify="left", caption=caption)
    table.add_column("#", justify="right")
    table.add_column("name")
    table.add_column("customers", justify="right")
    units = model.extras.get("units", {})
    for f in features:
        table.add_column(feature_heading(f, units.get(f, "")), justify="right")
    if rfm:
        table.add_column("RFM label")
    for row in model.profiles():
        cells = [str(row["segment"]), row["name"], f"{row['size']:,}"]
        cells += [feature_cell(f, row[f], units.get(f, "")) for f in features]
        if rfm:
            cells.append(rfm.get(row["segment"], {}).get("rfm_label", ""))
        table.add_row(*cells)
    return table


def run_table(model: SegmentModel, metrics: Mapping[str, Any], *, target: float) -> Table:
    """The run's key figures, one per line, each with what it means."""
    privacy = model.privacy
    table = Table(title="Run", title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("meaning", style="dim")
    spent = f"{privacy['epsilon']:.4g} of {target:g}" if math.isfinite(target) else "∞ (no noise)"
    table.add_row("ε spent", spent, f"user-level, at δ = {privacy['delta']:g} "
                  f"({privacy.get('accountant', '?')} accountant)")  # fmt: skip
    if "n_users" in metrics:
        table.add_row(
            "customers", f"{metrics['n_users']:,}", f"at {metrics['n_merchants']} merchants"
        )
    table.add_row(
        "DP Lloyd rounds",
        str(metrics.get("rounds", "")),
        "after one initialization round (at ε = ∞: until centres stop moving)",
    )
    if "ari" in metrics:
        table.add_row("ARI / NMI", f"{metrics['ari']:.3f} / {metrics['nmi']:.3f}",
                      "agreement with the planted segments (truth.csv; 1 = perfect)")  # fmt: skip
    ratio = metrics.get("cost_ratio_model_space")
    if ratio is not None:
        table.add_row("k-means cost ratio", f"{ratio:.3f}", "÷ non-private scikit-learn KMeans "
                      "in the model's feature space (1 = as good)")  # fmt: skip
    if "disagreement" in metrics:
        table.add_row("segment differs", f"{metrics['disagreement']:.1%}", "customers in another "
                      "segment than non-private KMeans puts them (matched; 0 = the same)")  # fmt: skip
    table.add_row("wall time", f"{metrics.get('wall_s', 0.0):.1f} s", "")
    return table


def privacy_table(privacy: Mapping[str, Any]) -> Table:
    """Every kind of release: enough to recompute ε with dp-accounting (docs/privacy.md)."""
    table = Table(title="Privacy: what was released", title_justify="left")
    table.add_column("release")
    table.add_column("mechanism")
    for heading in ("noise multiplier", "count", "ε alone"):
        table.add_column(heading, justify="right")
    for r in privacy.get("releases", []):
        table.add_row(r["name"], r["mechanism"], f"{r['noise_multiplier']:.4g}", str(r["count"]),
                      f"{r.get('epsilon_alone', math.nan):.3g}")  # fmt: skip
    return table


def files_line(paths: Sequence[Path]) -> str:
    return "wrote " + ", ".join(str(p) for p in paths)


def sweep_table(summary: pd.DataFrame, headings: Mapping[str, str]) -> Table:
    """The sweep's medians over seeds: one row per (setting, ε), the headline columns
    (every column: results.csv and report.html)."""
    table = Table(title="Median over seeds", title_justify="left",
                  caption="every metric: results.csv, report.html")  # fmt: skip
    columns = [c for c in SWEEP_COLUMNS if c in summary and summary[c].notna().any()]
    for c in columns:
        justify = "left" if c == "setting" else "right"
        table.add_column(headings.get(c, c), justify=justify, overflow="fold")
    for _, row in summary[columns].iterrows():
        table.add_row(*(format_number(row[c]) for c in columns))
    return table


def assignment_table(assigned: pd.DataFrame) -> Table:
    """How many of this merchant's customers each segment got."""
    counts = assigned.groupby(["segment", "segment_name"]).size().reset_index(name="n")
    table = Table(title="Your customers per segment", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("segment")
    table.add_column("customers", justify="right")
    for row in counts.itertuples():
        table.add_row(str(row.segment), row.segment_name, f"{row.n:,}")
    return table
