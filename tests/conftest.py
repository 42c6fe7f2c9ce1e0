"""Shared fixtures: small federations written to disk, as merchants would have them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def write_mixture_federation(
    root: Path, *, n: int, d: int, k: int, merchants: int, seed: int, spread: float = 10.0
) -> Path:
    """A features-kind federation: Gaussian blobs, merchant m gets every merchants-th row."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (k, d))
    labels = rng.integers(k, size=n)
    x = centres[labels] + rng.normal(size=(n, d))
    (root / "merchants").mkdir(parents=True, exist_ok=True)
    truth = []
    for m in range(merchants):
        rows = np.arange(m, n, merchants)
        ids = [f"cust-{m}-{i}" for i in rows]
        table = pd.DataFrame(x[rows], columns=[f"f{j}" for j in range(d)])
        table.insert(0, "user_id", ids)
        table.to_csv(root / "merchants" / f"m{m:02d}.csv", index=False)
        truth.append(
            pd.DataFrame({"merchant_id": f"m{m:02d}", "user_id": ids, "segment": labels[rows]})
        )
    pd.concat(truth).to_csv(root / "truth.csv", index=False)
    return root


@pytest.fixture
def mixture_federation(tmp_path: Path) -> Path:
    return write_mixture_federation(tmp_path / "fed", n=3000, d=4, k=3, merchants=3, seed=7)
