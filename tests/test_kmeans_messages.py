"""What leaves a merchant: every message in a traced simulation is scanned for customer data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_no_identifier_sent, assert_no_per_customer_array
from fedseg.client.features import customer_features
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.simulations.federation import write_federation
from fedseg.simulations.runner import merchant_files, simulate
from fedseg.simulations.synthetic import generate_federation


@pytest.fixture
def traced_run(tmp_path):
    generated = generate_federation(users=600, merchants=3, seed=5)
    for merchant_id, table in generated.merchants.items():  # ids long enough to search for
        table["user_id"] = [f"customer-{merchant_id}-{u}" for u in table["user_id"]]
    fed = write_federation(generated, tmp_path / "fed")
    trace = tmp_path / "trace"
    simulate(
        fed,
        {"k": 3, "epsilon": 1.0, "rounds": 3, "seed": 5},
        out_dir=tmp_path / "out",
        trace_dir=trace,
        evaluate=False,
    )
    return fed, sorted(trace.iterdir())


def test_every_client_message_is_traced(traced_run):
    _, files = traced_run
    # 3 merchants × (describe + histograms + 1 init round + at least 3 Lloyd rounds)
    assert len(files) >= 3 * 6
    assert all(f.stat().st_size > 0 for f in files)


def test_no_identifier_or_customer_vector_leaves_a_merchant(traced_run):
    fed, files = traced_run
    blob = b"".join(f.read_bytes() for f in files)
    sizes = []
    for path in merchant_files(fed):
        raw = pd.read_csv(path)
        pseudonymizer = Pseudonymizer.for_simulation(path.stem, 5)
        features, specs, _ = customer_features(path, pseudonymizer=pseudonymizer)
        assert_no_identifier_sent(blob, raw, features.index)
        rows = features[[s.name for s in specs]].to_numpy(dtype=np.float64)
        for row in rows[:300]:
            informative = row[row != 0]
            if len(informative) >= 3:  # a customer's vector, as the bytes numpy would send
                assert informative.tobytes() not in blob, "a raw feature row was sent"
        sizes.append(len(rows))
    assert_no_per_customer_array(files, sizes)
