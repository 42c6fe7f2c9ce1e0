"""Secure aggregation inside the real Flower apps: same sums, dropouts, what an abort costs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import accepted_plan, bare_node
from fedseg.client.secure import SecureIdentity, SessionMemory
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.releases import displacement_mechanism
from fedseg.privacy.secagg import SecAggLimits, simulation_roster, simulation_signing_key
from fedseg.server.aggregation import ReplySpec, RoundFailed
from fedseg.server.secure import SecureAggregator
from fedseg.server.transport import Reply
from fedseg.simulations.experiments.runner import simulate


def test_secure_sum_gives_the_plain_model_without_noise(mixture_federation, tmp_path):
    config = {"k": 3, "epsilon": float("inf"), "rounds": 3, "seed": 2}
    plain = simulate(mixture_federation, config, out_dir=tmp_path / "plain", evaluate=False).model
    secure = simulate(
        mixture_federation,
        dict(config, **{"secure-agg": True}),
        out_dir=tmp_path / "secure",
        evaluate=False,
    ).model
    np.testing.assert_allclose(secure.centres_standardized, plain.centres_standardized, atol=1e-6)


def test_distributed_noise_run_spends_its_budget_once(mixture_federation, tmp_path):
    config = {"k": 3, "epsilon": 1.0, "seed": 2, "secure-agg": True, "noise": "distributed"}
    result = simulate(mixture_federation, config, out_dir=tmp_path)
    assert result.metrics["epsilon_spent"] <= 1.0 + 1e-9
    assert result.metrics["ari"] > 0.95


class _FlakyTransport:
    """Real merchants' secure steps in memory; nodes in ``vanish`` stop answering at
    ``stage`` (and after)."""

    STAGES = ("advertise", "share", "masked", "consistency", "unmask")

    def __init__(self, nodes, vanish, *, stage="share"):
        self.nodes, self.vanish, self.stage = nodes, vanish, stage
        self.states = {}
        self.plan = accepted_plan(placement="distributed", cluster_displacements=5.0)
        self.roster = simulation_roster(0, [f"m{n}" for n in nodes])
        rng = np.random.default_rng(0)
        self.merchants = {
            n: bare_node(rng.normal(size=(50, 2)), lower=-5.0, upper=5.0, epsilon_cap=10.0)
            for n in nodes
        }
        self.identities = {
            n: SecureIdentity(f"m{n}", simulation_signing_key(0, f"m{n}"), self.roster,
                              SessionMemory(None), SecAggLimits())
            for n in nodes
        }  # fmt: skip

    def node_ids(self):
        return list(self.nodes)

    def request_each(self, task, payloads, *, timeout=None, max_bytes=None):
        from fedseg.client.secure import secure_step

        replies = []
        for node, payload in payloads.items():
            stage = self.STAGES.index(payload["secagg_stage"])
            if node in self.vanish and stage >= self.STAGES.index(self.stage):
                continue
            try:  # as the ClientApp does, a client exception becomes an error reply
                reply, self.states[node] = secure_step(
                    self.merchants[node], self.identities[node], node, task, payload,
                    self.states.get(node), self.plan,
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001
                replies.append(Reply(node, error=str(exc)))
                continue
            replies.append(Reply(node, payload=reply))
        return replies


def _secure_round(transport, ledger):
    aggregate = SecureAggregator(
        transport, ledger, roster=transport.roster, distributed=True, dropout_tolerance=0.2,
        collusion=0.0, min_clients=2,
    )  # fmt: skip
    payload = {
        "lower": np.full(2, -5.0), "upper": np.full(2, 5.0), "mean": np.zeros(2), "scale": np.ones(2),
        "radius": 7.0, "centres": np.array([[0.0, 0.0], [1.0, 1.0]]),
        "distance_edges": np.array([0.0, 1.0, 2.0, np.inf]),
        "release": "cluster_displacements", "request_id": 0,
    }  # fmt: skip
    spec = ReplySpec(shapes={"sums": (2, 2), "counts": (2,), "distances": (3,)}, sigmas={})
    release = displacement_mechanism(5.0, radius=7.0, dim=2).as_release("cluster_displacements")
    return aggregate("cluster_displacements", payload, spec, transport.nodes, release=release)


def test_too_many_dropouts_before_masking_abort_with_nothing_charged():
    transport = _FlakyTransport(list(range(10, 16)), vanish={10, 11, 12, 13})
    ledger = PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6)
    with pytest.raises(RoundFailed, match=r"nothing released \(nothing was charged\)"):
        _secure_round(transport, ledger)
    assert ledger.releases == []
    assert all(m.ledger.releases == [] for m in transport.merchants.values())


def test_dropouts_after_masking_abort_and_say_exactly_what_was_charged():
    """Merchants charge before their masked input leaves: when too many then vanish, the
    round releases nothing, and the run's ledger carries the same charge as theirs."""
    transport = _FlakyTransport(list(range(10, 16)), vanish={10, 11, 12}, stage="unmask")
    ledger = PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6)
    with pytest.raises(
        RoundFailed, match="stays charged on the run's ledger and on those of the 6"
    ):
        _secure_round(transport, ledger)
    charged = [m.ledger.releases for m in transport.merchants.values()]
    assert all(len(releases) == 1 for releases in charged)
    assert [r.name for r in ledger.releases] == ["cluster_displacements"]
