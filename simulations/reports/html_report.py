"""A self-contained ``report.html`` of a sweep: summary table, pictures (base64 PNG),
per-run table, failures. One file a person can mail or open offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

# Columns of the summary table: (metric, heading). The cost ratio in original units stays in
# results.csv only: with log-scaled features it compares against another objective
# (docs/simulations.md), so beside the model-space ratio it misleads more than it tells.
SUMMARY_METRICS = (
    ("epsilon_spent", "ε spent"),
    ("cost_ratio_model_space", "cost ratio (model space; 1 = as good as KMeans)"),
    ("ari", "ARI"),
    ("nmi", "NMI"),
    ("disagreement", "segment differs from KMeans (share of customers)"),
    ("centroid_error", "centroid error"),
    ("empty_clusters", "empty clusters"),
    ("bytes_per_client_round", "bytes / client / round"),
    ("recommender.recall_at_20", "Recall@20 (recommender, full ranking)"),
    ("recommender.ndcg_at_10_full", "NDCG@10 (full ranking)"),
    (
        "recommender.baselines.segment_popularity_dp.ndcg_at_10_full",
        "NDCG@10 DP segment popularity",
    ),
    ("recommender.baselines.ease.ndcg_at_10_full", "NDCG@10 EASE (non-private)"),
    ("recommender.hr_at_10", "HR@10 (sampled, 1 + 99; secondary)"),
    ("wall_s", "wall s"),
)
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
img{max-width:100%;border:1px solid #eee} .err{color:#a00}
div.wide{max-width:100%;overflow-x:auto}
"""


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds of each metric per (setting, ε), with the count of ok runs."""
    ok = results[results["status"] == "ok"]
    columns = [m for m, _ in SUMMARY_METRICS if m in ok.columns]
    if ok.empty:
        return pd.DataFrame(columns=["setting", "epsilon", "runs", *columns])
    grouped = ok.groupby(["setting", "epsilon"])
    table = grouped[columns].median()
    table.insert(0, "runs", grouped.size())
    return table.reset_index()


def write_html_report(
    out_dir: str | Path,
    results: pd.DataFrame,
    *,
    images: dict[str, Path],
    title: str = "fedseg sweep",
    model: dict | None = None,
) -> Path:
    """Write OUT/report.html from the results and the given pictures (caption → PNG); with a
    representative ``model`` (its model.json), also its per-segment "what to do"."""
    out = Path(out_dir)
    scenario = out / "scenario.json"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if scenario.exists():
        parts.append(_scenario_block(json.loads(scenario.read_text())))
    parts.append("<h2>Median over seeds</h2>")
    parts.append(_table(summary_table(results), SUMMARY_HEADINGS))
    for caption, path in images.items():
        parts.append(f"<h2>{html.escape(caption)}</h2>{_image(path)}")
    if model is not None and model.get("actions"):
        parts.append(actions_block(model))
    failed = results[results["status"] != "ok"]
    if not failed.empty:
        parts.append(f"<h2 class=err>Failed runs ({len(failed)})</h2>")
        parts.append(_table(failed[["setting", "epsilon", "seed", "error"]], {}))
    parts.append("<h2>Every run</h2><p>Headline figures; every metric is in results.csv.</p>")
    parts.append(_table(_run_columns(results), SUMMARY_HEADINGS))
    body = "\n".join(parts)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def actions_block(model: dict) -> str:
    """The model's "what to do" per segment (server/actions.py), with its standard labels."""
    names = model.get("segment_names", [])
    rfm = {row["segment"]: row for row in model.get("rfm") or []}
    items = []
    for action in model["actions"]:
        s = action["segment"]
        label = rfm.get(s, {})
        heading = f"Segment {s}" + (f": {names[s - 1]}" if s - 1 < len(names) else "")
        if label:
            heading += f" — {label['rfm_label']} / {label['shopify_group']}"
        items.append(f"<li><b>{html.escape(heading)}</b><br>{html.escape(action['text'])}</li>")
    return (
        "<h2>What to do per segment</h2><p>From released statistics only: segment centres, "
        "their RFM scores in the DP marginals, DP item popularity and lifetime value "
        "(docs/marketing.md).</p><ul>" + "".join(items) + "</ul>"
    )


SUMMARY_HEADINGS = dict(SUMMARY_METRICS) | {"epsilon": "ε (target)"}


# Options of generated federations: meaningless for a sweep over a federation on disk.
GENERATOR_KEYS = ("dataset", "users", "merchants", "segments", "sizes", "alpha", "feature_shift",
                  "dims")  # fmt: skip


def _scenario_block(scenario: dict) -> str:
    """The scenario's settings that apply: none empty, no generator options for --data."""
    shown = {
        k: v for k, v in scenario.items()
        if v not in ("", None, [], ()) and not (scenario.get("data") and k in GENERATOR_KEYS)
    }  # fmt: skip
    items = ", ".join(
        f"<b>{html.escape(k)}</b> = {html.escape(_setting(v))}" for k, v in shown.items()
    )
    return f"<p>Scenario: {items}</p>"


def _setting(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_setting(v) for v in value)
    return format_number(value) if isinstance(value, float) else str(value)


RUN_COLUMNS = ("setting", "epsilon", "seed", "status")


def _run_columns(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: who it is and the summary's metrics."""
    metrics = [m for m, _ in SUMMARY_METRICS if m in results.columns]
    return results[[c for c in RUN_COLUMNS if c in results.columns] + metrics]


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(Path(path).name)}' src='data:image/png;base64,{data}'>"


def _table(frame: pd.DataFrame, headings: dict[str, str]) -> str:
    head = "".join(
        f"<th class={_align(frame[c])}>{html.escape(headings.get(c, c))}</th>"
        for c in frame.columns
    )
    rows = []
    for _, row in frame.iterrows():
        cells = "".join(
            f"<td class={_align(frame[c])}>{html.escape(format_number(row[c]))}</td>"
            for c in frame.columns
        )
        rows.append(f"<tr>{cells}</tr>")
    # A table wider than the page scrolls inside its box; the page itself never does.
    return f"<div class=wide><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _align(column: pd.Series) -> str:
    return "r" if pd.api.types.is_numeric_dtype(column) else "l"


def format_number(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "∞"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def write_sweep_report(out_dir: str | Path, results: pd.DataFrame) -> dict[str, Path]:
    """tradeoff.png, profiles.png, convergence.png and report.html for a finished sweep."""
    from fedseg.simulations.reports.plots import plot_convergence, plot_profiles, plot_tradeoff

    out = Path(out_dir)
    paths = {"ε vs accuracy": plot_tradeoff(results, out / "tradeoff.png")}
    ok = results[results["status"] == "ok"]
    model = None
    if not ok.empty:
        setting, seed, epsilon = _representative(ok)
        runs = ok[(ok["setting"] == setting) & (ok["seed"] == seed)]
        model = _model(out, runs[runs["epsilon"] == epsilon].iloc[0])
        shown = f"{setting}, ε = {format_number(epsilon)}, seed {seed}"
        paths[f"Segment profiles ({shown})"] = plot_profiles(
            model, out / "profiles.png", subtitle=f"run shown: {shown}"
        )
        histories = {
            f"ε={format_number(r.epsilon)}": _model(out, r)["history"] for r in runs.itertuples()
        }
        paths[f"Convergence ({setting}, seed {seed})"] = plot_convergence(
            histories, out / "convergence.png"
        )
    paths["report"] = write_html_report(out, results, images=paths, model=model)
    return paths


def _representative(ok: pd.DataFrame) -> tuple[str, int, float]:
    """First setting, lowest seed, the finite ε nearest 1 (∞ if there is none)."""
    setting = sorted(ok["setting"].unique())[0]
    rows = ok[ok["setting"] == setting]
    seed = int(rows["seed"].min())
    eps = rows[rows["seed"] == seed]["epsilon"].astype(float)
    finite = eps[eps.map(math.isfinite)]
    epsilon = (
        float(finite.iloc[(finite.map(math.log) - 0.0).abs().argmin()]) if len(finite) else math.inf
    )
    return setting, seed, epsilon


def _model(out: Path, row) -> dict:
    point_id = row["point_id"] if isinstance(row, pd.Series) else row.point_id
    return json.loads((out / "runs" / point_id / "model.json").read_text())
