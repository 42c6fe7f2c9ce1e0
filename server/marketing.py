"""The marketing blocks of model.json: standard RFM labels, lifetime value, what to do.

Called by the ServerApp after the segmentation (and the recommender); everything but the
lifetime-value rounds is post-processing of what the run already published.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from fedseg.server.rounds import Rounds
from fedseg.server.segmentation import SegmentationFit

if TYPE_CHECKING:
    import pandas as pd


def rfm_labels(fitted: SegmentationFit) -> list[dict] | None:
    """Standard RFM labels of each segment (server/rfm.py): post-processing only."""
    from fedseg.server.rfm import segment_rfm

    return segment_rfm(
        profiles(fitted), features=fitted.scaling.names, log=fitted.scaling.log,
        marginals=fitted.marginals,
    )  # fmt: skip


def actions(fitted: SegmentationFit, extras: dict, catalogue: pd.DataFrame | None) -> list:
    """What to do per segment (server/actions.py), from the published blocks only."""
    from fedseg.server.actions import segment_actions

    recommender = extras.get("recommender") or {}
    scores = recommender.get("lift") or (recommender.get("prior") or {}).get("segments")
    return segment_actions(
        profiles(fitted), extras.get("rfm"), lifetime=extras.get("lifetime_value"),
        item_scores=None if scores is None else np.asarray(scores), catalogue=catalogue,
    )  # fmt: skip


def profiles(fitted: SegmentationFit) -> list[dict]:
    """Each segment's DP profile (its members' means) in original units, by feature name;
    the centre mapped back where the run released no profiles."""
    names = fitted.scaling.names
    values = fitted.profile_means
    if values is None:
        values = fitted.scaling.inverse(fitted.centres)
    return [
        {"segment": i + 1, **dict(zip(names, map(float, row), strict=True))}
        for i, row in enumerate(values)
    ]


def fit_lifetime_value(rounds: Rounds, fitted: SegmentationFit) -> dict:
    """The lifetime-value rounds (server/lifetime_value.py), within the same budget."""
    from fedseg.server.lifetime_value import LifetimeValueRun

    if not rounds.cfg.secagg.enabled:  # robust aggregators combine cluster estimates only
        rounds = replace(rounds, aggregate=None)
    return LifetimeValueRun(rounds).fit(fitted.scaling, fitted.centres, profiles(fitted))
