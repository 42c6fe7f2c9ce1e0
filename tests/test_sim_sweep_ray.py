"""The Ray backend (Flower's simulation engine) gives the same model as the in-process Grid."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_blob_federation
from fedseg.simulations.experiments.runner import simulate


@pytest.mark.slow
def test_inprocess_and_ray_give_the_same_model(tmp_path):
    data = write_blob_federation(tmp_path / "fed", n=900, d=3, k=3, merchants=3, seed=11)
    config = {"k": 3, "epsilon": 2.0, "rounds": 3, "seed": 4}
    local = simulate(data, config, out_dir=tmp_path / "inprocess", evaluate=False).model
    ray = simulate(data, config, out_dir=tmp_path / "ray", backend="ray", evaluate=False).model
    # Same noise draws; only the order replies are summed in may differ (≈1e-16).
    np.testing.assert_allclose(local.centres_standardized, ray.centres_standardized, atol=1e-12)
    np.testing.assert_allclose(local.segment_sizes, ray.segment_sizes, atol=1e-9)
    assert local.privacy == ray.privacy
