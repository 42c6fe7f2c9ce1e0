"""The black-box neighbour test: every release a merchant makes moves by at most its
declared L2 sensitivity when one customer — chosen to be extreme — is added.

A real run of the shipped ServerApp is recorded; its requests are replayed, through the
shipped ClientApp, to merchant m0 holding D and to merchant m0 holding D plus one customer
whose events are later than everyone else's, with a huge spend, hundreds of items, a new
category and an item the catalogue lacks. Both replays are seeded alike, so their noise is
identical and cancels in the difference; that difference, part by part, must fit the
mechanism privacy/releases.py declares for the request: Σ_p share_p (‖Δ_p‖ / Δ_p^max)² ≤ 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fedseg.privacy import releases
from fedseg.simulations.backends.replay import Merchants, arrays, record, simulation_config
from fedseg.simulations.data.federation import write_federation
from fedseg.simulations.data.neighbours import extreme_customer
from fedseg.simulations.data.synthetic import generate_federation

# The run's public as-of is two months after the synthetic events end (2024-12-31): a
# merchant measuring recency from its own latest event would move every customer when
# the extreme customer's late events arrive.
AS_OF = "2025-03-01T00:00:00Z"
KINDS = {
    releases.RANGES, releases.MOMENTS, releases.SQUARE_NORM, releases.INIT, releases.LLOYD,
    releases.PROFILES,
    releases.POPULARITY, releases.GRAM, releases.CONTENT_CHECK,
    releases.LIFETIME_HISTOGRAMS, releases.LIFETIME_SUMS,
}  # fmt: skip


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory):
    root = tmp_path_factory.mktemp("neighbours")
    fed = generate_federation(users=450, merchants=3, seed=4)
    d = write_federation(fed, root / "D")
    d_plus = root / "D+1"
    shutil.copytree(d, d_plus)
    table = pd.read_csv(d / "merchants" / "m0.csv")
    extreme_customer(table, fed.items).to_csv(d_plus / "merchants" / "m0.csv", index=False)
    config = {
        "k": 3, "epsilon": 8.0, "rounds": 3, "as-of": AS_OF, "recommender": True,
        "items": str(d / "items.csv"), "square-norm-share": 0.02, "lifetime-value": True,
    }  # fmt: skip
    requests = record(d, root / "out", **config)
    return d, d_plus, config, requests


def replies(data_dir: Path, config: dict, requests) -> list[tuple[str, dict, dict]]:
    merchants = Merchants(simulation_config(data_dir, data_dir / "out", **config), num_nodes=3)
    return [(task, payload, merchants.answer(task, payload)) for task, payload in requests]


def declared(task: str, payload: dict) -> releases.GaussianMechanism:
    """The mechanism privacy/releases.py declares for this request (noise multiplier 1)."""
    kind = payload["release"]
    if kind == releases.RANGES:
        return releases.histogram_mechanism(1.0, n_features=payload["edges"].shape[0])
    if kind == releases.MOMENTS:
        d, gram = len(payload["lower"]), bool(payload["gram"])
        return releases.moments_mechanism(1.0, dim=d, gram=gram)
    if kind == releases.SQUARE_NORM:
        return releases.square_norm_mechanism(1.0, radius=float(payload["radius"]))
    if kind in (releases.INIT, releases.LLOYD):
        d = len(payload["mean"])
        return releases.displacement_mechanism(1.0, radius=float(payload["radius"]), dim=d)
    if kind == releases.PROFILES:
        return releases.profiles_mechanism(1.0, dim=len(payload["mean"]))
    if kind == releases.POPULARITY:
        return releases.popularity_mechanism(1.0)
    if kind == releases.GRAM:
        return releases.gram_mechanism(1.0)
    if kind == releases.CONTENT_CHECK:
        return releases.content_check_mechanism(1.0, candidates=len(payload["candidates"]))
    if kind == releases.LIFETIME_HISTOGRAMS:
        return releases.lifetime_histogram_mechanism(1.0)
    if kind == releases.LIFETIME_SUMS:
        return releases.lifetime_sums_mechanism(1.0)
    raise AssertionError(f"no declared mechanism for {kind!r}")


def normalized_change(mechanism, a: dict, b: dict) -> float:
    """Σ_p share_p (‖a_p − b_p‖ / Δ_p)²: at most 1 when the release keeps its sensitivity."""
    return sum(
        mechanism.shares[p] * (np.linalg.norm(a[p] - b[p]) / bound) ** 2
        for p, bound in mechanism.sensitivities.items()
    )


@pytest.mark.slow
def test_every_release_moves_by_at_most_its_declared_sensitivity(neighbours):
    d, d_plus, config, requests = neighbours
    noisy = [(t, p) for t, p in requests if "release" in p]
    assert {p["release"] for _, p in noisy} == KINDS  # every kind of release was exercised
    changes: dict[str, float] = {}
    for (task, payload, a), (_, _, b) in zip(
        replies(d, config, requests), replies(d_plus, config, requests), strict=True
    ):
        if "release" not in payload:
            continue
        change = normalized_change(declared(task, payload), arrays(a), arrays(b))
        kind = payload["release"]
        changes[kind] = max(changes.get(kind, 0.0), change)
    assert all(change <= 1 + 1e-9 for change in changes.values()), changes
    # The extreme customer is really extreme: it uses most of each release's sensitivity.
    assert changes[releases.RANGES] > 0.5 and changes[releases.LLOYD] > 0.3, changes
    assert changes[releases.MOMENTS] > 0.3 and changes[releases.PROFILES] > 0.3, changes
    # one count in each of its three parts (purchases, spend, activity): Σ shares = 1
    assert changes[releases.LIFETIME_HISTOGRAMS] > 0.99, changes
    assert changes[releases.LIFETIME_SUMS] > 0.15, changes  # at least its count and P(alive)
