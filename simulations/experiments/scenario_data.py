"""The federation of a scenario and seed, written to disk once and reused by every run.

Generated federations (synthetic personas, Gaussian mixture) take the scenario's size
distribution, non-IID degree α and regional feature shift; real data sets (CDNOW,
MovieLens-100k) take only the number of merchants. A ``.ready`` marker is written last,
so an interrupted preparation is redone rather than half-used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fedseg.simulations.data.federation import Federation, write_federation
from fedseg.simulations.experiments.scenario import Scenario

READY = ".ready"


def prepare_federation(scenario: Scenario, seed: int, root: str | Path) -> Path:
    """The federation directory for (scenario, seed) under ``root``; generated if missing."""
    if scenario.data:
        return Path(scenario.data)
    out = Path(root) / f"{scenario.dataset}-seed{seed}"
    if (out / READY).exists():
        return out
    fed = build_federation(scenario, seed)
    write_federation(fed, out)
    (out / READY).write_text("ok\n")
    return out


def build_federation(scenario: Scenario, seed: int) -> Federation:
    """The in-memory federation of a scenario (data options only) and seed."""
    from fedseg.simulations.data.datasets import load_dataset

    if scenario.dataset == "cdnow":
        return load_dataset("cdnow", merchants=scenario.merchants)
    if scenario.dataset == "ml-100k":
        return load_dataset("ml-100k", regions=min(scenario.merchants, 10))
    if scenario.dataset == "mixture":
        fed = _mixture(scenario, seed)
    else:
        if scenario.sizes != "lognormal":
            raise ValueError("sizes: the synthetic generator draws lognormal merchant sizes only")
        fed = load_dataset(
            "synthetic",
            users=scenario.users,
            merchants=scenario.merchants,
            segments=scenario.segments,
            alpha=scenario.alpha,
            seed=seed,
        )
    if scenario.feature_shift > 0:
        fed = shift_features(fed, scenario.feature_shift, np.random.default_rng([seed, 1]))
    return fed


def _mixture(scenario: Scenario, seed: int) -> Federation:
    from fedseg.simulations.data.mixture import gaussian_mixture_federation, mixture_to_federation

    mixture = gaussian_mixture_federation(
        n=scenario.users,
        d=scenario.dims,
        k=scenario.segments,
        merchants=scenario.merchants,
        alpha=scenario.alpha,
        seed=seed,
        sizes="equal" if scenario.sizes == "equal" else "heavy",
    )
    return mixture_to_federation(mixture)


def shift_features(fed: Federation, shift: float, rng: np.random.Generator) -> Federation:
    """Regional covariate shift: each merchant's values move by its own random factor.

    Events: prices (and durations) × exp(shift · g_m), g_m ~ N(0, 1) — a regional price level.
    Features: non-negative columns × exp(shift · g_mj), others + shift · g_mj · column std.
    Planted personas are unchanged, so ARI still measures recovery of the same segments.
    """
    merchants = {}
    for merchant_id, table in fed.merchants.items():
        table = table.copy()
        if fed.kind == "events":
            factor = float(np.exp(shift * rng.standard_normal()))
            for column in ("price", "duration_s"):
                if column in table.columns:
                    table[column] = table[column] * factor
        else:
            for column in table.columns.drop("user_id"):
                g = rng.standard_normal()
                values = table[column].astype(float)
                if (values >= 0).all():
                    table[column] = values * np.exp(shift * g)
                else:
                    table[column] = values + shift * g * values.std(ddof=0)
        merchants[merchant_id] = table
    return Federation(merchants=merchants, items=fed.items, truth=fed.truth, kind=fed.kind,
                      as_of=fed.as_of, features=fed.features)  # fmt: skip
