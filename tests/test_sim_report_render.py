"""The sweep's pictures and page as a person sees them: a colorbar and the run shown on
profiles.png, labels that never round a distinctive centre to 0, whole-number rounds on
convergence.png, and report.html laid out by a real headless browser within 1,280 px."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from fedseg.simulations.reports.html_report import write_sweep_report
from fedseg.simulations.reports.plots import (
    cell_label,
    convergence_figure,
    profiles_figure,
    readable_text_colour,
)

FEATURES = ["orders", "spend", "recency_days", "share_beauty"]
BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
               None)  # fmt: skip


def _model() -> dict:
    centres = [[0.037, 0.15, 84.0, 0.0001], [2.4, 310.0, 715.0, 0.63]]
    return {
        "features": FEATURES,
        "centroids_standardized": [[2.5, 2.6, -1.0, -0.5], [-0.4, -0.3, 1.2, 2.0]],
        "profiles": [
            {"segment": s + 1, "name": n, "size": z, **dict(zip(FEATURES, c, strict=True))}
            for s, (n, z, c) in enumerate(
                zip(("loyal", "dormant"), (1042, 539), centres, strict=True)
            )
        ],
        "history": [
            {"task": "cluster_displacements", "round": r, "movement": 2.0**-r} for r in (1, 2, 3)
        ],
        "actions": [],
    }


def test_profile_cells_keep_small_centres_readable():
    assert cell_label("spend", 0.15) == "0.15"  # a feature_cell "{:.0f}" would show 0
    assert cell_label("orders", 0.037) == "0.037"
    assert cell_label("recency_days", 715.2) == "715"
    assert cell_label("tenure_days", 1234.0) == "1,234"
    assert cell_label("share_beauty", 0.63) == "63%"
    assert cell_label("share_beauty", 0.004) == "0.4%"
    assert cell_label("share_beauty", 0.0001) == "≈0%" and cell_label("reviews", 4.8e-5) == "≈0"
    assert cell_label("spend", 0.0) == "0" and cell_label("share_home", 0.0) == "0%"


def test_cell_text_is_black_on_light_and_white_on_dark():
    assert readable_text_colour((1.0, 1.0, 1.0, 1.0)) == "black"
    assert readable_text_colour((0.4, 0.0, 0.1, 1.0)) == "white"  # RdBu_r's dark red end


def test_profiles_picture_has_a_colorbar_and_names_the_run_it_shows():
    fig = profiles_figure(_model(), subtitle="run shown: local, ε = 1, seed 0")
    heatmap, colorbar = fig.axes  # a second axes is the colorbar
    assert "standardized" in colorbar.get_ylabel()
    assert heatmap.get_title().endswith("run shown: local, ε = 1, seed 0")
    cells = [t.get_text() for t in heatmap.texts]
    assert cells[:4] == ["0.037", "0.15", "84.0", "≈0%"]
    plt.close(fig)


def test_convergence_rounds_are_whole_numbers():
    fig = convergence_figure({"ε=1": _model()["history"]})
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def _sweep(tmp_path) -> pd.DataFrame:
    """A finished sweep on disk: two runs of the built-in data with every summary metric."""
    rows = []
    for eps in (1.0, math.inf):
        point = f"local_eps{eps}_seed0"
        (tmp_path / "runs" / point).mkdir(parents=True)
        (tmp_path / "runs" / point / "model.json").write_text(json.dumps(_model()))
        rows.append({"point_id": point, "setting": "local", "epsilon": eps, "seed": 0,
                     "status": "ok", "error": "", "epsilon_spent": eps, "ari": 0.85,
                     "cost_ratio": 3.6, "cost_ratio_model_space": 1.05, "nmi": 0.87,
                     "centroid_error": 2.0, "empty_clusters": 0.0,
                     "bytes_per_client_round": 490.0, "wall_s": 1.5,
                     **{f"extra_metric_{i}": 123456.789 for i in range(30)}})  # fmt: skip
    scenario = {"name": "default", "dataset": "synthetic", "data": "", "users": 3000, "k": 4}
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    return pd.DataFrame(rows)


def test_report_shows_no_empty_settings_and_keeps_results_csv_columns_out(tmp_path):
    page = write_sweep_report(tmp_path, _sweep(tmp_path))["report"].read_text()
    assert "<b>data</b>" not in page and "data=," not in page  # the built-in data
    assert "<b>users</b> = 3000" in page
    assert "extra_metric_0" not in page and "original units)" not in page
    assert "run shown: local, ε = 1, seed 0" not in page  # inside the PNG, not the page text
    assert "Segment profiles (local, ε = 1, seed 0)" in page


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium on this machine")
def test_report_fits_1280_pixels_in_a_headless_browser(tmp_path):
    page = write_sweep_report(tmp_path, _sweep(tmp_path))["report"]
    # Measured after layout by the page itself, into an attribute the DOM dump carries.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            """<script>
      addEventListener('load', () => {
        const imgs = [...document.images];
        document.body.dataset.width = document.documentElement.scrollWidth;
        document.body.dataset.images = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
        document.body.dataset.widest = Math.max(...imgs.map(i => i.getBoundingClientRect().right));
      });</script></body>""",
        )
    )
    done = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
         "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    body = re.search(r"<body ([^>]*)>", done.stdout)
    assert body, done.stderr[-2000:]
    measured = dict(re.findall(r'data-(\w+)="([\d.]+)"', body.group(1)))
    assert int(measured["images"]) == 3  # tradeoff, profiles and convergence all decode
    assert int(measured["width"]) <= 1280  # the page never scrolls sideways
    assert float(measured["widest"]) <= 1280
