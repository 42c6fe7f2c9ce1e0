"""Secure aggregation inside the real Flower apps: same sums, dropouts, what an abort costs."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from conftest import accepted_plan, bare_node, run_on_grid, write_blob_federation
from fedseg.client.app import app as client_app
from fedseg.client.secure import SecureIdentity, SessionMemory
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.releases import displacement_mechanism
from fedseg.privacy.secagg import SecAggLimits, simulation_roster, simulation_signing_key
from fedseg.privacy.wire import pack, unpack
from fedseg.server.aggregation import ReplySpec, RoundFailed
from fedseg.server.app import app as server_app
from fedseg.server.model import SegmentModel
from fedseg.server.secure import SecureAggregator
from fedseg.server.transport import Reply
from fedseg.simulations.backends.inprocess import InProcessGrid, run_inprocess
from fedseg.simulations.experiments.runner import simulate, simulation_roster_file
from flwr.app import Context, Message


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


def _secure_round(transport, ledger, *, min_clients=2, round_timeout=None):
    aggregate = SecureAggregator(
        transport, ledger, roster=transport.roster, distributed=True, dropout_tolerance=0.2,
        collusion=0.0, min_clients=min_clients, round_timeout=round_timeout,
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


@pytest.mark.parametrize("stage", ["share", "unmask"])
def test_a_merchant_silent_in_a_secure_round_it_survives_is_named_with_its_stage(stage):
    transport = _FlakyTransport(list(range(10, 16)), vanish={12}, stage=stage)
    aggregate = _secure_round(transport, PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6))
    assert 12 not in aggregate.log.contributors or stage == "unmask"
    assert aggregate.log.rejected == {12: f"node 12: {stage}: no reply before the deadline"}


class _ChattyTransport(_FlakyTransport):
    """Node 10 answers every stage twice, the second time with junk, and node 99, never
    asked, answers too: copying node 11's replies."""

    def request_each(self, task, payloads, *, timeout=None, max_bytes=None):
        replies = super().request_each(task, payloads, timeout=timeout, max_bytes=max_bytes)
        first = {r.node_id: r for r in replies}
        unasked = [Reply(99, payload=first[11].payload)] if 11 in first else []
        twice = [Reply(10, payload={"junk": 1.0})] if 10 in first else []
        return [*unasked, *replies, *twice]


def test_secure_replies_from_nodes_not_asked_and_second_replies_are_ignored():
    transport = _ChattyTransport(list(range(10, 16)), vanish=set())
    aggregate = _secure_round(transport, PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6))
    assert sorted(aggregate.log.contributors) == list(range(10, 16))
    assert aggregate.log.rejected == {}


def test_each_merchant_adds_its_share_of_the_noise_only_under_distributed_noise():
    """With distributed noise a released sum of ≥ m_min survivors carries the charged σ, so
    each adds 1/(m_min − ⌊γn⌋) of the variance (6 merchants, tolerance 0.2: 1/5); with local
    noise each adds all of it, and the aggregate says which."""
    transport = _FlakyTransport(list(range(10, 16)), vanish=set())
    ledger = PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6)
    shares = {}
    for distributed in (True, False):
        aggregator = SecureAggregator(
            transport, ledger, roster=transport.roster, distributed=distributed,
            dropout_tolerance=0.2, collusion=0.0, min_clients=2,
        )  # fmt: skip
        shares[distributed] = aggregator.noise_share
    assert shares == {True: pytest.approx(1 / 5), False: 1.0}
    assert _secure_round(transport, ledger).noise_share == pytest.approx(1 / 5)


class _TimedTransport(_FlakyTransport):
    """Every stage takes ``seconds``; records the timeout each stage was sent with."""

    def __init__(self, nodes, *, seconds):
        super().__init__(nodes, vanish=set())
        self.seconds, self.timeouts = seconds, []

    def request_each(self, task, payloads, *, timeout=None, max_bytes=None):
        self.timeouts.append((time.monotonic(), timeout))
        time.sleep(self.seconds)
        return super().request_each(task, payloads, timeout=timeout, max_bytes=max_bytes)


def test_the_stages_of_a_secure_round_share_one_deadline():
    """round-timeout bounds the whole round (five stages), not each stage: a stage is sent
    with what is left of the deadline (issue 15: one round took 190 s at round-timeout 20)."""
    transport = _TimedTransport(list(range(10, 14)), seconds=0.3)
    _secure_round(transport, PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6), round_timeout=4.0)
    timeouts = [timeout for _, timeout in transport.timeouts]
    assert len(timeouts) == 5 and 2.0 < timeouts[0] <= 4.0
    for stage, timeout in enumerate(timeouts):  # each stage took ≥ 0.3 s off what is left
        assert 0 < timeout <= timeouts[0] - 0.3 * stage + 1e-9
    untimed = _TimedTransport(list(range(10, 14)), seconds=0.0)
    _secure_round(untimed, PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6))
    assert [timeout for _, timeout in untimed.timeouts] == [None] * 5


def test_a_stage_past_the_deadline_still_gets_a_moment_to_answer():
    transport = _TimedTransport(list(range(10, 14)), seconds=0.25)
    _secure_round(transport, PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6), round_timeout=0.5)
    assert [timeout for _, timeout in transport.timeouts[-3:]] == [0.1] * 3


@pytest.mark.parametrize("min_clients", [0, 1, 2])
def test_a_secure_sum_over_one_merchant_is_refused_whatever_min_clients_says(min_clients):
    """The sum of one merchant's masked input is that merchant's release: never run it."""
    transport = _FlakyTransport([10], vanish=set())
    ledger = PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6)
    with pytest.raises(RoundFailed, match="secure aggregation needs at least 2 merchants"):
        _secure_round(transport, ledger, min_clients=min_clients)
    assert ledger.releases == [] and transport.merchants[10].ledger.releases == []


def test_a_secure_round_runs_with_exactly_min_clients_merchants():
    transport = _FlakyTransport([10, 11, 12], vanish=set())
    ledger = PrivacyLedger(None, epsilon_cap=10.0, delta=1e-6)
    aggregate = _secure_round(transport, ledger, min_clients=3)
    assert sorted(aggregate.log.contributors) == [10, 11, 12]
    with pytest.raises(RoundFailed, match="needs at least 4 merchants"):
        _secure_round(_FlakyTransport([10, 11, 12], vanish=set()), ledger, min_clients=4)


# -- through the shipped apps: what an aborted round costs, in its message and on disk ----

SECURE_MERCHANTS = 6  # dropout tolerance 0.3: m_min = 5, so two merchants gone abort a round


@pytest.fixture(scope="module")
def secure_federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure") / "fed"
    return write_blob_federation(root, n=1200, d=3, k=3, merchants=SECURE_MERCHANTS, seed=4)


def _secure_config(fed, tmp) -> dict:
    config = {"k": 3, "epsilon": 2.0, "delta": 1e-6, "seed": 3, "secure-agg": True,
              "noise": "distributed", "sim-data-dir": str(fed), "features": str(fed / "schema.toml"),
              "sim-state-dir": str(tmp / "state"), "out-dir": str(tmp / "out")}  # fmt: skip
    config["secagg-roster"] = str(simulation_roster_file(fed, config, tmp))
    return config


def _charged(tmp) -> dict[str, list[str]]:
    """Each merchant's ledger as its state directory holds it: the releases charged."""
    names = [f"m{m:02d}" for m in range(SECURE_MERCHANTS)]
    files = {name: tmp / "state" / name / "ledger.json" for name in names}
    return {
        name: [r["name"] for r in json.loads(f.read_text())["releases"]] if f.exists() else []
        for name, f in files.items()
    }


def _leaving_at(stage: str, partitions=(0, 1)):
    """The real ClientApp, except that ``partitions`` fail at ``stage`` of a secure round."""

    def app(message: Message, context: Context) -> Message:
        if (
            int(context.node_config["partition-id"]) in partitions
            and message.content["config"].get("secagg_stage") == stage
        ):
            raise RuntimeError("merchant went away")
        return client_app(message, context)

    return app


@pytest.mark.parametrize("stage", ["share", "consistency", "unmask"])
def test_merchants_leaving_a_secure_round_abort_it_and_the_message_says_what_was_charged(
    secure_federation, tmp_path, stage
):
    config = _secure_config(secure_federation, tmp_path)
    with pytest.raises(RoundFailed, match="secure aggregation aborted, nothing released") as info:
        run_inprocess(server_app, _leaving_at(stage), num_nodes=SECURE_MERCHANTS, run_config=config)
    charged = _charged(tmp_path)
    if stage == "share":  # before any masked input: nobody charged anything
        assert "(nothing was charged)" in str(info.value)
        assert all(releases == [] for releases in charged.values())
    else:  # every merchant charged itself before its masked input left
        assert (
            "release 'feature_ranges' stays charged on the run's ledger and on those of the "
            f"{SECURE_MERCHANTS} merchants that sent masked inputs"
        ) in str(info.value)
        assert all(releases == ["feature_ranges"] for releases in charged.values())
    assert not (tmp_path / "out" / "model.json").exists()


class _LateMaskedGrid(InProcessGrid):
    """Merchants in ``late`` compute and send their masked input (charging themselves first),
    but it arrives after the deadline: the server never sees it."""

    late: frozenset[int] = frozenset()

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        replies = super().send_and_receive(messages, timeout=timeout)
        if all(m.content["config"].get("secagg_stage") != "masked" for m in messages):
            return replies
        return [r for r in replies if r.metadata.src_node_id - 2 not in self.late]


@pytest.mark.parametrize("late", [2, SECURE_MERCHANTS])
def test_masked_inputs_lost_after_the_charge_are_reported_as_possibly_charged(
    secure_federation, tmp_path, late
):
    grid = type("Late", (_LateMaskedGrid,), {"late": frozenset(range(late))})
    config = _secure_config(secure_federation, tmp_path)
    with pytest.raises(RoundFailed, match="secure aggregation aborted") as info:
        run_on_grid(server_app, grid, client_app, num_nodes=SECURE_MERCHANTS, run_config=config)
    arrived = SECURE_MERCHANTS - late
    assert (
        "release 'feature_ranges' stays charged on the run's ledger and on those of the "
        f"{arrived} merchants that sent masked inputs; {late} more were asked for one and sent "
        "none we could use: they may have paid too"
    ) in str(info.value)
    assert all(releases == ["feature_ranges"] for releases in _charged(tmp_path).values())


def _rewriting_at(stage: str, partition: int, rewrite):
    """The real ClientApp; ``partition`` rewrites its reply's content at ``stage``."""

    def app(message: Message, context: Context) -> Message:
        reply = client_app(message, context)
        if (
            int(context.node_config["partition-id"]) == partition
            and message.content["config"].get("secagg_stage") == stage
        ):
            rewrite(reply.content)
        return reply

    return app


def _add_junk(content):  # 2^61 added to every masked word: in range of no honest sum
    masked = unpack(content["arrays"]["masked"]) + np.uint64(2**61)
    content["arrays"]["masked"] = pack(masked)


def test_a_merchant_adding_junk_to_its_masked_words_aborts_the_run_with_nothing_published(
    secure_federation, tmp_path
):
    config = _secure_config(secure_federation, tmp_path)
    with pytest.raises(RoundFailed, match="outside the range 6 merchants can produce"):
        run_inprocess(
            server_app, _rewriting_at("masked", 0, _add_junk), num_nodes=SECURE_MERCHANTS,
            run_config=config,
        )  # fmt: skip
    assert not (tmp_path / "out" / "model.json").exists()


def _add_notes(content):
    content["config"]["notes"] = "hello"


def _pad_undecodable(content):  # 400 kB that claim to be one float: decoding them would fail
    content["arrays"]["padding"] = pack(np.zeros(1)) + bytes(400_000)


@pytest.mark.parametrize(
    ("stage", "rewrite", "reason"),
    [
        ("advertise", _add_notes, r"advertise: field 'notes' was not asked for"),
        ("masked", _pad_undecodable, r"masked: 4\d{5} bytes, at most \d+ accepted"),
    ],
)
def test_a_secure_reply_with_unasked_keys_or_too_many_bytes_is_a_dropout_never_decoded(
    secure_federation, tmp_path, stage, rewrite, reason
):
    config = _secure_config(secure_federation, tmp_path)
    client = _rewriting_at(stage, 0, rewrite)
    run_inprocess(server_app, client, num_nodes=SECURE_MERCHANTS, run_config=config)
    history = SegmentModel.load(tmp_path / "out" / "model.json").history
    noisy = [entry for entry in history if entry["task"] not in ("describe", "plan")]
    assert noisy
    for entry in noisy:  # the round went on without it, every time
        assert sorted(entry["contributors"]) == list(range(3, SECURE_MERCHANTS + 2))
        assert re.fullmatch(f"node 2: {reason}", entry["rejected"]["2"]), entry["rejected"]["2"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| 2 | " in report and "Aggregation: secure sums" in report
