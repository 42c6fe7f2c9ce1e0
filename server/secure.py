"""Secure aggregation of a noisy round: the server learns only the sum over merchants.

Each noisy request becomes the protocol stages of ``fedseg.privacy.secagg``
(advertise keys → share keys → masked input → unmask), carried by the same
``Transport`` and message types as a plain round. With distributed noise each merchant
adds 1/(m_min − colluders) of the noise variance (privacy/releases.py noise_placement),
so a released sum — which holds at least m_min survivors — carries at least the charged σ.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import BudgetExceeded, PrivacyLedger
from fedseg.privacy.releases import minimum_survivors, noise_placement
from fedseg.privacy.secagg import SecAggAborted, SecAggConfig, SecAggServer
from fedseg.privacy.secagg.wire import flatten, unflatten
from fedseg.server.aggregation import Aggregate, ReplySpec, RoundFailed
from fedseg.server.transport import Payload, RoundLog, Transport

# Largest |value| a merchant may put into the fixed-point encoding (sums of standardized
# vectors and counts of up to ~10⁷ customers, noise included); larger values are an
# error at the merchant, never clipped.
MAX_ABS_VALUE = 1e8


class SecureAggregator:
    """An ``Aggregator`` running each noisy round through secure aggregation.

    It charges the server's ledger itself, once the masked inputs are in: a round that
    aborts before that releases nothing and costs nothing.
    """

    charges_ledger = True

    def __init__(
        self,
        transport: Transport,
        ledger: PrivacyLedger,
        *,
        distributed: bool,
        dropout_tolerance: float,
        collusion: float,
        min_clients: int,
        round_timeout: float | None = None,
    ) -> None:
        self.transport = transport
        self.ledger = ledger
        self.distributed = distributed
        self.dropout_tolerance = dropout_tolerance
        self.collusion = collusion
        self.min_clients = max(min_clients, 2)
        self.round_timeout = round_timeout  # one deadline for all stages of a round
        self._round_ids = itertools.count(1)

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
        round_id = next(self._round_ids)
        config = SecAggConfig.choose(
            num_clients=len(nodes),
            vector_spec=tuple((name, tuple(shape)) for name, shape in spec.shapes.items()),
            max_abs_value=MAX_ABS_VALUE,
            dropout_rate=self.dropout_tolerance,
        )
        placement = noise_placement(
            "distributed" if self.distributed else "local", len(nodes), self.dropout_tolerance,
            self.collusion,
        )  # fmt: skip
        log = RoundLog(task=release.name, asked=tuple(nodes))
        server = SecAggServer(config, round_id=round_id)
        opening = dict(payload, secagg_round=round_id, secagg_config=json.dumps(asdict(config)))
        charged = False
        self._deadline = None if not self.round_timeout else time.monotonic() + self.round_timeout
        try:
            keys = self._stage(task, "advertise", {n: opening for n in nodes}, log)
            roster = flatten(server.collect_keys(keys))
            shares = self._stage(task, "share", {n: roster for n in keys}, log)
            inboxes = server.collect_shares(shares)
            masked = self._stage(task, "masked", {n: flatten(m) for n, m in inboxes.items()}, log)
            if masked:  # each merchant charged itself before its masked input left
                self.ledger.charge(release)
                charged = True
            lists = server.collect_masked(masked)
            if len(masked) < minimum_survivors(len(nodes), self.dropout_tolerance):
                raise SecAggAborted(
                    f"only {len(masked)} of {len(nodes)} merchants sent masked inputs, more "
                    f"than the dropout tolerance {self.dropout_tolerance} allows to drop "
                    "(raise --dropout-tolerance, at the cost of more noise per merchant)"
                )
            answers = self._stage(task, "unmask", {n: flatten(m) for n, m in lists.items()}, log)
            sums = server.collect_unmask(answers)
        except (SecAggAborted, BudgetExceeded) as exc:
            cost = (
                f"release {release.name!r} stays charged on the run's ledger and on those of the "
                f"{len(masked)} merchants that sent masked inputs"
                if charged
                else "nothing was charged"
            )
            raise RoundFailed(
                f"{task}: secure aggregation aborted, nothing released ({cost}): {exc}"
            ) from None
        log.contributors = tuple(server.contributors_)
        return Aggregate(sums=sums, log=log, noise_share=placement.share)

    def _stage(self, task: str, stage: str, payloads: Mapping[int, Payload], log: RoundLog) -> dict:
        """Send one protocol stage; replies that fail count as this node dropping out."""
        requests = {n: dict(p, secagg_stage=stage) for n, p in payloads.items()}
        answers = {}
        left = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.1)
        for reply in self.transport.request_each(task, requests, timeout=left):
            log.bytes_received += reply.size_bytes
            if reply.error is not None or reply.payload is None:
                log.rejected[reply.node_id] = f"node {reply.node_id}: {stage}: {reply.error}"
            else:
                answers[reply.node_id] = unflatten(dict(reply.payload))
        for node in payloads:
            if node not in answers and node not in log.rejected:
                log.rejected[node] = f"node {node}: {stage}: no reply before the deadline"
        return answers
