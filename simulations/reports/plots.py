"""Pictures of a sweep (matplotlib, Agg backend): privacy–accuracy trade-off, segment
profiles, convergence.

ε = ∞ (no noise) cannot sit on a log axis; it is drawn at its own tick to the right of the
largest finite ε, past a broken-axis gap, so the non-private reference reads as the
curve's ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# Panels of the trade-off picture: (column, axis label, reference line).
TRADEOFF_PANELS = (
    (
        "cost_ratio_model_space",
        "k-means cost ÷ non-private KMeans\n(model's feature space; 1 = as good)",
        1.0,
    ),
    ("ari", "ARI against planted segments\n(1 = perfect recovery)", None),
    ("disagreement", "customers in another segment than\nnon-private KMeans (0 = the same)", 0.0),
)
INF_GAP = 3.0  # ∞ is drawn this factor to the right of the largest finite ε
MOVEMENT_FLOOR = 1e-3
PROFILE_COLOURS = "RdBu_r"  # diverging: below average blue, above red


def epsilon_positions(epsilons: Sequence[float]) -> tuple[np.ndarray, float | None]:
    """x positions for ε values on a log axis, ∞ mapped past the largest finite ε."""
    eps = np.asarray(epsilons, dtype=float)
    finite = eps[np.isfinite(eps)]
    inf_x = (finite.max() if finite.size else 1.0) * INF_GAP if np.isinf(eps).any() else None
    return np.where(np.isinf(eps), inf_x or 0.0, eps), inf_x


def quartiles(results: pd.DataFrame, column: str) -> pd.DataFrame:
    """Median and quartiles of ``column`` per (setting, ε), over seeds; ok rows only."""
    ok = results[(results["status"] == "ok") & results[column].notna()]
    grouped = ok.groupby(["setting", "epsilon"])[column]
    return pd.DataFrame(
        {"q1": grouped.quantile(0.25), "median": grouped.median(), "q3": grouped.quantile(0.75)}
    ).reset_index()


def plot_tradeoff(results: pd.DataFrame, path: str | Path) -> Path:
    """ε (log axis, ∞ at the right) vs cost ratio, ARI and the share of customers whose
    segment differs from KMeans': median line, quartile band."""
    panels = [p for p in TRADEOFF_PANELS if p[0] in results.columns]
    fig, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(6.2 * len(panels), 4.4), squeeze=False
    )
    for ax, (column, label, reference) in zip(axes[0], panels, strict=False):
        stats = quartiles(results, column)
        for setting, rows in stats.groupby("setting"):
            _median_with_band(ax, rows, setting)
        if reference is not None:
            ax.axhline(reference, color="grey", linestyle=":", linewidth=1)
        _epsilon_axis(ax, results["epsilon"].astype(float).unique())
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
    seeds = results["seed"].nunique() if len(results) else 0
    fig.suptitle(f"What ε costs: median and quartiles over {seeds} seed(s)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title="noise placement", loc="lower center", ncols=len(labels))
        fig.tight_layout(rect=(0, 0.12, 1, 1))
    return _save(fig, path, layout=not handles)


def _median_with_band(ax, rows: pd.DataFrame, label: str) -> None:
    """Finite ε as a line with a quartile band; ∞ as a separate point with quartile bar."""
    x, _ = epsilon_positions(rows["epsilon"])
    finite = np.isfinite(rows["epsilon"].to_numpy(dtype=float))
    (line,) = ax.plot(x[finite], rows["median"][finite], marker="o", label=label)
    colour = line.get_color()
    ax.fill_between(x[finite], rows["q1"][finite], rows["q3"][finite], color=colour, alpha=0.2)
    if (~finite).any():
        inf_rows = rows[~finite]
        yerr = [inf_rows["median"] - inf_rows["q1"], inf_rows["q3"] - inf_rows["median"]]
        ax.errorbar(x[~finite], inf_rows["median"], yerr=yerr, fmt="D", color=colour, capsize=4)


def _epsilon_axis(ax, epsilons: Sequence[float]) -> None:
    x, inf_x = epsilon_positions(sorted(epsilons))
    ax.set_xscale("log")
    finite = [e for e in sorted(epsilons) if math.isfinite(e)]
    ticks = list(finite) + ([inf_x] if inf_x else [])
    ax.set_xticks(ticks, [f"{e:g}" for e in finite] + (["∞\n(no noise)"] if inf_x else []))
    ax.minorticks_off()
    if inf_x and finite:
        gap = math.sqrt(max(finite) * inf_x)
        ax.axvline(gap, color="black", linewidth=0.8, linestyle=(0, (2, 2)))
    ax.set_xlabel("total ε of the run (log scale)")


def plot_profiles(model: Mapping, path: str | Path, *, subtitle: str = "") -> Path:
    """Segments × features: cells show the members' DP means in original units, colour the
    centre's z-score."""
    return _save(profiles_figure(model, subtitle=subtitle), path)


def profiles_figure(model: Mapping, *, subtitle: str = "") -> Figure:
    """The profiles picture; ``subtitle`` says which run it shows (setting, ε, seed)."""
    features = list(model["features"])
    profiles = model["profiles"]
    z = np.asarray(model["centroids_standardized"], dtype=float)
    fig, ax = plt.subplots(figsize=(2.6 + 0.9 * len(features), 1.8 + 0.55 * len(profiles)))
    limit = max(float(np.abs(z).max()), 1e-9)
    image = ax.imshow(z, cmap=PROFILE_COLOURS, vmin=-limit, vmax=limit, aspect="auto")
    for i, row in enumerate(profiles):
        for j, feature in enumerate(features):
            ax.text(j, i, cell_label(feature, row[feature]), ha="center", va="center",
                    fontsize=9, color=readable_text_colour(image.to_rgba(z[i, j])))  # fmt: skip
    ax.set_xticks(
        range(len(features)), [f.replace("_", " ") for f in features], rotation=40, ha="right"
    )
    ax.set_yticks(
        range(len(profiles)), [f"{r['segment']}. {r['name']} ({r['size']:,})" for r in profiles]
    )
    colorbar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    colorbar.set_label("centre, standardized\n(0 = average customer)")
    title = "Segment profiles: members' DP means, colour = standardized centre"
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title)
    return fig


def cell_label(feature: str, value: float) -> str:
    """A centre as its cell shows it: shares in percent, two significant digits below 1, so a
    small but distinctive centre (0.15 orders) never reads as 0; no scientific notation."""
    if feature.startswith(("share_", "spend_share_")):
        percent = 100 * value
        if abs(percent) >= 1:
            return f"{percent:.0f}%"
        return f"{percent:.1f}%" if abs(percent) >= 0.1 else ("0%" if value == 0 else "≈0%")
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}" if abs(value) >= 0.001 else ("0" if value == 0 else "≈0")


def readable_text_colour(background: Sequence[float]) -> str:
    """Black or white, whichever contrasts more with an RGB(A) cell (WCAG luminance)."""
    return "black" if _contrast("black", background) >= _contrast("white", background) else "white"


def _contrast(text: str, background: Sequence[float]) -> float:
    from matplotlib.colors import to_rgb

    lighter, darker = sorted((_luminance(to_rgb(text)), _luminance(background[:3])), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(rgb: Sequence[float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour with channels in [0, 1]."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def plot_convergence(histories: Mapping[str, Sequence[Mapping]], path: str | Path) -> Path:
    """Largest centre movement per DP Lloyd round (standardized units), one line per run."""
    return _save(convergence_figure(histories), path)


def convergence_figure(histories: Mapping[str, Sequence[Mapping]]) -> Figure:
    """The convergence picture. Movements below MOVEMENT_FLOOR (a converged noiseless run
    moves ~1e-12) sit on the floor."""
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(histories), 1)))
    for colour, (label, history) in zip(colours, histories.items(), strict=False):
        rounds = [
            h for h in history if h.get("task") == "cluster_displacements" and "movement" in h
        ]
        if rounds:
            ax.plot(
                [h["round"] for h in rounds],
                [max(h["movement"], MOVEMENT_FLOOR) for h in rounds],
                marker="o",
                color=colour,
                label=label,
            )
    ax.set_yscale("log")
    ax.set_ylim(bottom=MOVEMENT_FLOOR / 2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    ax.set_xlabel("DP Lloyd round")
    ax.set_ylabel("largest centre movement (standardized units)")
    ax.set_title("Convergence per round")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def _save(fig, path: str | Path, *, layout: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
