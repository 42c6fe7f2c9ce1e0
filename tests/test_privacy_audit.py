"""The audit of a real release path: it passes the shipped merchant node and catches the two
bugs that matter, planted here — recency measured from the merchant's own latest event (a
statistic that depends on other customers) and half the noise.

Each trial is one ``MerchantNode.answer`` of a feature-histograms request on a real events
table D or on D plus one extreme customer (the neighbouring table).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fedseg.client import merchant
from fedseg.client.merchant import MerchantSettings, build_node
from fedseg.client.plan import AcceptedPlan
from fedseg.client.policy import MerchantPolicy
from fedseg.privacy import releases
from fedseg.privacy.accounting import PlannedRelease, Release, calibrate
from fedseg.privacy.audit import audit
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.protocol.builtin import ecommerce_schema
from fedseg.server.ranges import range_edges
from fedseg.simulations.data.neighbours import extreme_customer
from fedseg.simulations.data.synthetic import generate_federation

DELTA, CLAIMED, TRIALS = 1e-5, 1.0, 4000
Z = calibrate([PlannedRelease("h", 1.0)], epsilon=CLAIMED, delta=DELTA)["h"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    fed = generate_federation(users=60, merchants=1, seed=8)
    table = fed.merchants["m0"]
    table.to_csv(root / "D.csv", index=False)
    extreme_customer(table, fed.items).to_csv(root / "D+1.csv", index=False)
    return root / "D.csv", root / "D+1.csv"


def sampler(path, z: float = Z):
    """Fresh feature-histogram releases (noise multiplier ``z``) of the merchant node
    holding ``path``."""
    settings = MerchantSettings(
        data_path=str(path), merchant_id="m0", as_of="2025-03-01",
        policy=MerchantPolicy(epsilon_cap=math.inf), simulation_seed=0,
    )  # fmt: skip
    schema = ecommerce_schema()
    node = build_node(settings, schema)
    node.noise_seed = None  # OS entropy, as deployed: the ledger is reset below
    edges = range_edges(schema, 16)
    request = {"edges": edges, "release": releases.RANGES}
    plan = AcceptedPlan(RunPlan((Release(releases.RANGES, z, count=10**9),)))

    def draw(n: int) -> np.ndarray:
        out = []
        for i in range(n):
            if i % 25 == 0:  # keeps each charge cheap; the charges themselves are not audited
                node.ledger = PrivacyLedger(None, epsilon_cap=math.inf, delta=DELTA)
            out.append(node.answer("feature_histograms", request, plan)["counts"].ravel())
        return np.stack(out)

    return draw


def audited(tables):
    """The audit, its test statistic pointed by the same release path without noise."""
    d, d_plus = tables
    direction = sampler(d_plus, 0.0)(1)[0] - sampler(d, 0.0)(1)[0]
    return audit(sampler(d), sampler(d_plus), trials=TRIALS, delta=DELTA, direction=direction)


def test_the_shipped_release_passes_the_audit(tables):
    result = audited(tables)
    assert result.epsilon_lower_bound <= CLAIMED
    assert result.epsilon_gaussian_lower_bound <= CLAIMED
    assert result.mu == pytest.approx(1 / Z, abs=0.1)  # one customer shifts by 1/z


def test_the_audit_catches_recency_measured_from_the_data(tables, monkeypatch):
    real = merchant.customer_features
    monkeypatch.setattr(
        merchant, "customer_features", lambda source, **kw: real(source, **{**kw, "as_of": None})
    )
    result = audited(tables)
    assert result.epsilon_lower_bound > CLAIMED and result.epsilon_gaussian_lower_bound > CLAIMED


def test_the_audit_catches_half_the_noise(tables, monkeypatch):
    def half(self, mechanism: GaussianMechanism) -> GaussianMechanism:
        return GaussianMechanism(
            mechanism.noise_multiplier / 2, mechanism.sensitivities, mechanism.shares
        )

    monkeypatch.setattr(releases.NoisePlacement, "per_merchant", half)
    result = audited(tables)
    assert result.epsilon_gaussian_lower_bound > CLAIMED
    assert result.mu == pytest.approx(2 / Z, abs=0.1)
