"""Sweep pictures and the HTML report: ε axis with ∞, quartiles, self-contained page."""

from __future__ import annotations

import base64
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from fedseg.simulations.reports.html_report import summary_table, write_html_report
from fedseg.simulations.reports.plots import (
    INF_GAP,
    _epsilon_axis,
    epsilon_positions,
    plot_convergence,
    plot_tradeoff,
    quartiles,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results() -> pd.DataFrame:
    rows = []
    for eps in (0.5, 2.0, math.inf):
        for seed, ari in zip((0, 1, 2, 3), (0.1, 0.2, 0.3, 0.9), strict=True):
            rows.append({"point_id": f"p{eps}{seed}", "setting": "local", "epsilon": eps,
                         "seed": seed, "status": "ok", "error": "", "ari": ari * min(eps, 4),
                         "cost_ratio_model_space": 1 + 1 / eps, "epsilon_spent": eps})  # fmt: skip
    rows.append({"point_id": "bad", "setting": "distributed", "epsilon": 1.0, "seed": 0,
                 "status": "error", "error": "ValueError: not supported"})  # fmt: skip
    return pd.DataFrame(rows)


def test_infinity_sits_right_of_the_largest_finite_epsilon():
    x, inf_x = epsilon_positions([0.1, 8.0, math.inf])
    assert inf_x == 8.0 * INF_GAP
    assert x.tolist() == [0.1, 8.0, 8.0 * INF_GAP]
    assert epsilon_positions([1.0, 2.0])[1] is None


def test_epsilon_axis_labels_infinity_at_its_own_tick():
    fig, ax = plt.subplots()
    _epsilon_axis(ax, [0.5, 2.0, math.inf])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:2] == ["0.5", "2"] and labels[2].startswith("∞")
    assert ax.get_xticks()[-1] == pytest.approx(2.0 * INF_GAP)
    plt.close(fig)


def test_quartiles_over_seeds_skip_failed_runs():
    stats = quartiles(_results(), "ari").set_index("epsilon")
    # seeds' ARI at ε=0.5: 0.05, 0.1, 0.15, 0.45 → median 0.125, q1 0.0875, q3 0.225
    assert stats.loc[0.5, "median"] == pytest.approx(0.125)
    assert stats.loc[0.5, "q1"] == pytest.approx(0.0875)
    assert stats.loc[0.5, "q3"] == pytest.approx(0.225)
    assert set(stats["setting"]) == {"local"}


def test_pictures_are_png_files(tmp_path):
    assert plot_tradeoff(_results(), tmp_path / "t.png").read_bytes()[:8] == PNG_MAGIC
    history = [
        {"task": "cluster_displacements", "round": r, "movement": m}
        for r, m in ((1, 1.0), (2, 0.0))
    ]
    assert plot_convergence({"ε=1": history}, tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


def test_summary_table_medians_and_report_embeds_images(tmp_path):
    results = _results()
    table = summary_table(results).set_index("epsilon")
    assert table.loc[2.0, "runs"] == 4
    assert table.loc[2.0, "ari"] == pytest.approx(np.median([0.2, 0.4, 0.6, 1.8]))
    png = plot_tradeoff(results, tmp_path / "tradeoff.png")
    page = write_html_report(tmp_path, results, images={"trade-off": png}).read_text()
    assert base64.b64encode(png.read_bytes()).decode() in page  # self-contained
    assert "ValueError: not supported" in page  # failures are shown, not hidden
    assert "∞" in page and "<img" in page and "src='http" not in page


def test_report_shows_what_to_do_per_segment(tmp_path):
    model = {
        "segment_names": ["high-value loyal", "dormant"],
        "rfm": [{"segment": 1, "rfm_label": "Champions", "shopify_group": "CHAMPIONS"},
                {"segment": 2, "rfm_label": "Can't Lose Them", "shopify_group": "PREVIOUSLY_LOYAL"}],
        "actions": [{"segment": 1, "text": "Segment 1 (Champions); reward, don't discount."},
                    {"segment": 2, "text": "Segment 2 (Can't Lose Them); spend: win-back offer now."}],
    }  # fmt: skip
    page = write_html_report(tmp_path, _results(), images={}, model=model).read_text()
    assert "What to do per segment" in page
    assert "Segment 2: dormant — Can&#x27;t Lose Them / PREVIOUSLY_LOYAL" in page
    assert "spend: win-back offer now." in page
    assert "What to do" not in write_html_report(tmp_path, _results(), images={}).read_text()
