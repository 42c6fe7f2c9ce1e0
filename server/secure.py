"""Secure aggregation of a noisy round: the server learns only the sum over merchants.

Each noisy request becomes the five stages of ``fedseg.privacy.secagg`` (advertise keys →
share keys → masked input → sign the survivor set → unmask) over the same ``Transport``.
Every merchant derives the round's public context itself — n from its pinned roster, the
dropout tolerance and collusion bound from the plan it accepted, the request digest from
the request it received — and the server derives the same from its copy of the roster.
Every stage's replies are bounded in size and checked for unexpected keys before anything
is decoded. With distributed noise each merchant adds ``noise_share`` of the variance, so a
released sum, which holds at least m_min survivors, carries at least the charged σ.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence

from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import BudgetExceeded, PrivacyLedger
from fedseg.privacy.protocol.records import from_records, to_records
from fedseg.privacy.secagg import (
    REPLY_KEYS,
    FederationRoster,
    SecAggAborted,
    SecAggError,
    SecAggParams,
    SecAggServer,
    SecAggSession,
    input_spec,
    max_reply_bytes,
    noise_share,
    request_digest,
)
from fedseg.privacy.secagg.wire import flatten, unflatten
from fedseg.server.aggregation import Aggregate, ReplySpec, RoundFailed
from fedseg.server.transport import Payload, RoundLog, Transport

# Largest |value| of a merchant's encoded input (sums of standardized vectors and counts of up
# to ~10⁷ customers, noise included). A merchant clips larger values (post-processing of its
# noisy release, never an error that could depend on its data); n merchants' inputs together
# cannot wrap the ring (privacy/secagg/config.py).
MAX_ABS_VALUE = 1e8
STAGES = ("advertise", "share", "masked", "consistency", "unmask")


class SecureAggregator:
    """An ``Aggregator`` running each noisy round through secure aggregation.

    It charges the server's ledger itself, just before it asks for masked inputs (each
    merchant charges itself before sending one): a round that aborts before that costs
    nothing; one that aborts later says which merchants paid, or may have.
    """

    charges_ledger = True

    def __init__(
        self,
        transport: Transport,
        ledger: PrivacyLedger,
        *,
        roster: FederationRoster,
        distributed: bool,
        dropout_tolerance: float,
        collusion: float,
        min_clients: int,
        round_timeout: float | None = None,
    ) -> None:
        self.transport = transport
        self.ledger = ledger
        self.roster = roster
        self.distributed = distributed
        self.params = SecAggParams(dropout_tolerance, collusion)
        self.min_clients = max(min_clients, 2)
        self.round_timeout = round_timeout  # one deadline for all stages of a round
        self._deadline: float | None = None

    @property
    def noise_share(self) -> float:
        """Each merchant's share of a release's noise variance."""
        if not self.distributed:
            return 1.0
        params = self.params
        return noise_share(len(self.roster), params.dropout_tolerance, params.collusion)

    def __call__(
        self,
        task: str,
        payload: Payload,
        spec: ReplySpec,
        nodes: Sequence[int],
        *,
        release: Release,
    ) -> Aggregate:
        if len(nodes) < self.min_clients:
            raise RoundFailed(
                f"{task}: secure aggregation needs at least {self.min_clients} merchants"
            )
        request = from_records(to_records(payload))  # as every merchant will decode it
        session = SecAggSession.create(
            roster=self.roster, params=self.params, round_id=secrets.randbits(63),
            request_digest=request_digest(request), vector_spec=input_spec(spec.shapes),
            max_abs_value=MAX_ABS_VALUE,
        )  # fmt: skip
        server = SecAggServer(session)
        log = RoundLog(task=release.name, asked=tuple(nodes))
        opening = {**payload, "secagg_round": session.round_id, "secagg_max_abs": MAX_ABS_VALUE}
        self._deadline = None if not self.round_timeout else time.monotonic() + self.round_timeout
        asked: Sequence[int] = ()  # the merchants asked for a masked input
        masked: dict = {}
        try:
            messages = {n: opening for n in nodes}
            for stage, collect in zip(STAGES, self._collectors(server), strict=True):
                if stage == "masked":
                    # Each merchant charges itself just before its masked input leaves, so
                    # from here on any of them may have paid, whether or not we hear from it.
                    self.ledger.charge(release)
                    asked = tuple(messages)
                replies = self._stage(task, stage, messages, log, session)
                if stage == "masked":
                    masked = replies
                messages = collect(replies)
        except (SecAggAborted, SecAggError, BudgetExceeded) as exc:
            cost = _abort_cost(release, asked, masked)
            raise RoundFailed(
                f"{task}: secure aggregation aborted, nothing released ({cost}): {exc}"
            ) from None
        log.contributors = tuple(server.contributors_)
        return Aggregate(sums=messages, log=log, noise_share=self.noise_share)

    @staticmethod
    def _collectors(server: SecAggServer):
        return (server.collect_keys, server.collect_shares, server.collect_masked,
                server.collect_signatures, server.collect_unmask)  # fmt: skip

    def _stage(
        self,
        task: str,
        stage: str,
        messages: Mapping[int, Payload],
        log: RoundLog,
        session: SecAggSession,
    ) -> dict:
        """Send one stage; a reply that fails, is too large or holds unexpected keys counts
        as that merchant dropping out (it is never decoded or passed on)."""
        requests = {n: dict(flatten(dict(m)), secagg_stage=stage) for n, m in messages.items()}
        left = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.1)
        limit = max_reply_bytes(stage, session.config)
        allowed = {"round", "request_id", *REPLY_KEYS[stage]}
        answers = {}
        for reply in self.transport.request_each(task, requests, timeout=left, max_bytes=limit):
            log.bytes_received += reply.size_bytes
            node = reply.node_id
            if node not in messages or node in answers:  # nobody asked it, or it answered twice
                continue
            if reply.error is not None or reply.payload is None:
                why = reply.error or f"{reply.size_bytes} bytes, at most {limit} accepted"
                log.rejected[node] = f"node {node}: {stage}: {why}"
                continue
            extra = sorted({key.split("#")[0] for key in reply.payload} - allowed)
            if extra:
                log.rejected[node] = f"node {node}: {stage}: field {extra[0]!r} was not asked for"
                continue
            flat = {k: v for k, v in reply.payload.items() if k != "request_id"}
            answers[node] = unflatten(flat)
        for node in messages:
            if node not in answers and node not in log.rejected:
                log.rejected[node] = f"node {node}: {stage}: no reply before the deadline"
        return answers


def _abort_cost(release: Release, asked: Sequence[int], masked: Mapping[int, object]) -> str:
    """What an aborted round cost: merchants whose masked input arrived have paid; those
    asked for one that did not answer may have (their input can be lost after the charge)."""
    if not asked:
        return "nothing was charged"
    silent = len(set(asked) - set(masked))
    maybe = (
        f"; {silent} more were asked for one and sent none we could use: they may have paid too"
        if silent
        else ""
    )
    return (
        f"release {release.name!r} stays charged on the run's ledger and on those of the "
        f"{len(masked)} merchants that sent masked inputs{maybe}"
    )
