"""Secure aggregation of a noisy round: the server learns only the sum over merchants.

Each noisy request becomes the four protocol stages of ``fedseg.privacy.secagg``
(advertise keys → share keys → masked input → unmask), carried by the same
``Transport`` and message types as a plain round. With distributed noise each merchant
adds 1/m of the noise variance, m = merchants expected to survive; if fewer survive,
the sum carries less noise and the missing privacy is charged before unmasking (a
Gaussian "top-up" release whose precision makes up the difference, exactly).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import BudgetExceeded, PrivacyLedger
from fedseg.privacy.secagg import SecAggAborted, SecAggConfig, SecAggServer
from fedseg.privacy.secagg.noise import topup_noise_multiplier
from fedseg.privacy.secagg.wire import flatten, unflatten
from fedseg.server.aggregation import Aggregate, ReplySpec, RoundFailed
from fedseg.server.transport import Payload, RoundLog, Transport

# Largest |value| a merchant may put into the fixed-point encoding (sums of standardized
# vectors and counts of up to ~10⁷ customers, noise included); larger values are an
# error at the merchant, never clipped.
MAX_ABS_VALUE = 1e8


def noise_clients(
    num_clients: int, *, distributed: bool, dropout_tolerance: float, threshold: int
) -> int:
    """How many merchants' noise shares the sum is planned to hold (1 for local noise)."""
    if not distributed:
        return 1
    return max(threshold, math.floor(num_clients * (1.0 - dropout_tolerance)))


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
        min_clients: int,
    ) -> None:
        self.transport = transport
        self.ledger = ledger
        self.distributed = distributed
        self.dropout_tolerance = dropout_tolerance
        self.min_clients = max(min_clients, 2)
        self._round_ids = itertools.count(1)

    def __call__(
        self, task: str, payload: Payload, spec: ReplySpec, nodes: Sequence[int]
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
        planned = noise_clients(
            len(nodes), distributed=self.distributed,
            dropout_tolerance=self.dropout_tolerance, threshold=config.threshold,
        )  # fmt: skip
        log = RoundLog(task=str(payload["release"]), asked=tuple(nodes))
        server = SecAggServer(config, round_id=round_id)
        opening = dict(
            payload,
            secagg_round=round_id,
            secagg_config=json.dumps(asdict(config)),
            noise_clients=planned,
        )
        try:
            keys = self._stage(task, "advertise", {n: opening for n in nodes}, log)
            roster = flatten(server.collect_keys(keys))
            shares = self._stage(task, "share", {n: roster for n in keys}, log)
            inboxes = server.collect_shares(shares)
            masked = self._stage(task, "masked", {n: flatten(m) for n, m in inboxes.items()}, log)
            lists = server.collect_masked(masked)
            self._charge(payload, survivors=len(masked), planned=planned)
            answers = self._stage(task, "unmask", {n: flatten(m) for n, m in lists.items()}, log)
            sums = server.collect_unmask(answers)
        except (SecAggAborted, BudgetExceeded) as exc:
            raise RoundFailed(
                f"{task}: secure aggregation aborted, nothing released: {exc}"
            ) from None
        log.contributors = tuple(server.contributors_)
        return Aggregate(sums=sums, log=log)

    def _stage(self, task: str, stage: str, payloads: Mapping[int, Payload], log: RoundLog) -> dict:
        """Send one protocol stage; replies that fail count as this node dropping out."""
        requests = {n: dict(p, secagg_stage=stage) for n, p in payloads.items()}
        answers = {}
        for reply in self.transport.request_each(task, requests):
            log.bytes_received += reply.size_bytes
            if reply.error is not None or reply.payload is None:
                log.rejected[reply.node_id] = f"node {reply.node_id}: {stage}: {reply.error}"
            else:
                answers[reply.node_id] = unflatten(dict(reply.payload))
        for node in payloads:
            if node not in answers and node not in log.rejected:
                log.rejected[node] = f"node {node}: {stage}: no reply before the deadline"
        return answers

    def _charge(self, payload: Payload, *, survivors: int, planned: int) -> None:
        """Charge the round once enough masked inputs arrived, before anything is unmasked."""
        z = float(payload["noise_multiplier"])
        self.ledger.charge(Release.of_request(payload))
        z_top = topup_noise_multiplier(z, survivors=survivors, noise_clients=planned)
        if z_top is not None:
            self.ledger.charge(
                Release(name=f"{payload['release']}_dropout_topup", noise_multiplier=z_top)
            )
