"""What every round of a run shares: how to reach the merchants, the plan they accepted, the
server's ledger and the log of every round.

Written against ``Transport`` only, so the same rounds run under every Flower runtime and in
tests without one. Every noisy request is charged to the server's ledger with the release's
mechanism (privacy/releases.py) before it is sent (or, under secure aggregation, when the
masked inputs are in); each merchant charges its own ledger with the mechanism it builds.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fedseg.privacy import releases
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.mechanisms import GaussianMechanism
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.protocol.codes import describe as describe_code
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.published.identity import fedseg_version
from fedseg.server.aggregation import Aggregate, ReplySpec, RoundFailed, aggregate_plain
from fedseg.server.config import SegmentationConfig
from fedseg.server.transport import Payload, Reply, Transport

# An aggregator turns (task, payload, spec, nodes) into summed statistics; plain
# summation by default, secure aggregation or robust aggregation when configured.
Aggregator = Callable[[str, Payload, ReplySpec, Sequence[int]], Aggregate]


@dataclass
class Rounds:
    """What every round of a run shares: how to reach the merchants and what was done."""

    transport: Transport
    cfg: SegmentationConfig
    ledger: PrivacyLedger
    aggregate: Aggregator | None = None
    history: list[dict] = field(default_factory=list)
    request_ids: itertools.count = field(default_factory=itertools.count)
    members: tuple[int, ...] = ()  # every merchant connected when the run started
    left_out: dict[int, str] = field(default_factory=dict)  # merchant → why it takes no part
    noise: dict[str, float] = field(default_factory=dict)  # noise multiplier per release kind
    sizes: dict[int, tuple[float, float]] = field(default_factory=dict)  # node → (n̂, its σ)
    on_round: Callable[[dict], None] | None = None  # told of every round, e.g. to log it
    plan: RunPlan | None = None  # the plan every taking part accepted

    def record(self, entry: dict) -> None:
        """Keep one round's log entry (and tell ``on_round``)."""
        self.history.append(entry)
        if self.on_round is not None:
            self.on_round(entry)

    def gaussian_round(
        self, task: str, kind: str, payload: dict, mechanism: GaussianMechanism, spec: ReplySpec
    ) -> Aggregate:
        """A round releasing ``kind`` through ``mechanism`` (privacy/releases.py)."""
        release = mechanism.as_release(kind)
        return self.noisy_round(task, payload, spec, release=release, sigmas=mechanism.sigmas())

    def noisy_round(
        self,
        task: str,
        payload: dict,
        spec: ReplySpec,
        *,
        release: Release,
        sigmas: Mapping[str, float] | None = None,
    ) -> Aggregate:
        """One noisy request to the merchants, summed.

        The request names the planned release kind; merchants take its noise multiplier
        from the plan they accepted. The server's ledger is charged with ``release`` before
        anything is sent, unless the aggregator charges at its own point (secure
        aggregation, once the masked inputs are in). ``sigmas`` is the noise each merchant's
        reply part carries (none: the noise was added inside training); the aggregate's
        ``noise_sigmas`` say how much noise its sums carry.
        """
        # Connected merchants, asked afresh each round: a node the SuperLink has marked
        # offline is not waited for in every later round, but is listed with its status.
        connected = set(self.transport.node_ids())
        nodes = sorted(connected - set(self.left_out))
        request = dict(payload, release=release.name, request_id=next(self.request_ids))
        sigmas = dict(sigmas or dict.fromkeys(spec.shapes, 0.0))
        spec = replace(spec, sigmas=sigmas, request_id=request["request_id"])
        if not getattr(self.aggregate, "charges_ledger", False):
            self.ledger.charge(release)
        started = time.perf_counter()
        if self.aggregate is not None:
            agg = self.aggregate(task, request, spec, nodes, release=release)
        else:
            replies = self.transport.request(task, request, nodes, max_bytes=spec.max_bytes())
            agg = aggregate_plain(
                release.name, nodes, replies, spec, min_clients=self.cfg.min_clients
            )
        agg.log.seconds = time.perf_counter() - started
        asked = set(nodes)
        for node in self.members:
            if node not in asked:
                reason = self.left_out.get(node, "offline: the SuperLink no longer lists it")
                agg.log.rejected.setdefault(node, f"node {node}: {reason}")
        self.record(agg.log.to_dict())
        placement = releases.NoisePlacement(agg.noise_share)
        contributors = len(agg.log.contributors)
        noise = {p: placement.sigma_of_sum(s, contributors) for p, s in sigmas.items()}
        return replace(agg, noise_sigmas=noise)

    def expected_noise(self, mechanism: GaussianMechanism) -> dict[str, float]:
        """Noise std of each part of a sum over the merchants taking part, before the round
        (the aggregate's ``noise_sigmas`` say it afterwards, from who contributed)."""
        placement = releases.NoisePlacement(getattr(self.aggregate, "noise_share", 1.0))
        taking_part = sum(1 for n in self.members if n not in self.left_out)
        return {p: placement.sigma_of_sum(s, taking_part) for p, s in mechanism.sigmas().items()}

    def describe(self, schema: FeatureSchema, nodes: Sequence[int]) -> None:
        """Send the operator's feature schema; a merchant that does not reply with its digest
        (another schema, a table that does not fit it, no reply in time) is left out of the
        run. Nothing else is asked or taken from a merchant here: the schema and its bounds
        are the operator's."""
        started = time.perf_counter()
        digest = schema.digest()
        request = {"schema": schema.to_toml(), "fedseg_version": fedseg_version()}
        replies = self.transport.request("describe", request, nodes, max_bytes=0)
        why = dict.fromkeys(nodes, "no reply before the deadline")
        why.update(
            {r.node_id: _schema_disagreement(r, digest) for r in replies if r.node_id in why}
        )
        agreeing = [n for n in nodes if why[n] is None]
        rejected = {n: f"node {n}: {w}" for n, w in why.items() if w is not None}
        for node, reason in why.items():
            if reason is not None:
                self.left_out[node] = f"left out: {reason} (describe)"
        self.record(
            {"task": "describe", "asked": len(nodes), "contributors": agreeing,
             "rejected": {str(k): v for k, v in rejected.items()},
             "seconds": time.perf_counter() - started}
        )  # fmt: skip
        if len(agreeing) < self.cfg.min_clients:
            reasons = "; ".join(list(rejected.values())[:3]) or "no replies"
            raise RoundFailed(
                f"describe: {len(agreeing)} of {len(nodes)} merchants apply the feature schema "
                f"{schema.source}, at least {self.cfg.min_clients} needed; nothing was released "
                f"({reasons})"
            )

    def agree(self, plan: RunPlan, nodes: Sequence[int]) -> None:
        """Every merchant accepts the whole plan or is left out, before any release."""
        started = time.perf_counter()
        asked = [n for n in nodes if n not in self.left_out]
        replies = self.transport.request("plan", {"plan": plan.to_json()}, asked)
        accepted = [
            r.node_id for r in replies if r.error is None and (r.payload or {}).get("accepted") == 1
        ]
        agreed = set(accepted)  # sets: a list's `in` made this round quadratic in merchants
        answered = {r.node_id: _reason(r) for r in replies if r.node_id not in agreed}
        why = {n: answered.get(n, "no reply before the deadline") for n in asked if n not in agreed}
        rejected = {n: f"node {n}: {reason}" for n, reason in why.items()}
        rejected.update({n: f"node {n}: {self.left_out[n]}" for n in nodes if n in self.left_out})
        for node, reason in why.items():
            self.left_out[node] = f"left out: did not accept the plan ({reason})"
        self.noise = {r.name: r.noise_multiplier for r in plan.releases}
        self.plan = plan
        self.record(
            {"task": "plan", "asked": len(asked), "contributors": accepted,
             "rejected": {str(k): v for k, v in rejected.items()},
             "seconds": time.perf_counter() - started}
        )  # fmt: skip
        if len(accepted) < self.cfg.min_clients:
            reasons = "; ".join(list(rejected.values())[:3])
            raise RoundFailed(
                f"plan: only {len(accepted)} of {len(asked)} merchants accepted the run's plan, "
                f"at least {self.cfg.min_clients} needed; nothing was released ({reasons})"
            )


DIGEST_KEYS = {"schema_digest", "request_id"}


def _schema_disagreement(reply: Reply, digest: str) -> str | None:
    """Why a describe reply does not show agreement with the schema (None if it does): one
    short string, the schema's digest, and nothing else."""
    if reply.error is None and reply.payload is None:  # refused on its size, undecoded
        return f"field 'payload' is {reply.size_bytes} bytes of arrays, a digest has none"
    if reply.error is not None or not isinstance(reply.payload, Mapping):
        return _reason(reply)
    extra = sorted(set(reply.payload) - DIGEST_KEYS)
    if extra:
        return f"field {str(extra[0])[:40]!r} was not asked for"
    value = reply.payload.get("schema_digest")
    if not isinstance(value, str) or len(value) > 64:
        return "field 'schema_digest' is not a digest"
    if value != digest:
        return "applies another feature schema"
    return None


def _reason(reply: Reply) -> str:
    """Why a merchant gave no usable answer, in the operator's words (codes only)."""
    if reply.error is not None:
        return describe_code(reply.error)
    return "no usable answer"
