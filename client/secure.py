"""A merchant's side of a secure-aggregation round, kept across the five stage messages.

The merchant derives the round's whole public context itself (privacy/secagg): n from its
pinned roster, the dropout tolerance and collusion bound from the plan it accepted, the
request digest from the request it received. At the first stage it prepares its noisy
statistic through the node's one release path, with its share of the noise sized for the
fewest honest survivors it will ever help unmask (``session.config.noise_share``); it
charges its own ledger with the release it built just before its masked input leaves; it
signs the survivor set and reveals shares only under the protocol's checks.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator, Mapping, MutableSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fedseg.client.node import BadRequest, MerchantNode
from fedseg.client.plan import AcceptedPlan
from fedseg.privacy.releases import NoisePlacement
from fedseg.privacy.secagg import (
    FederationRoster,
    SecAggClient,
    SecAggLimits,
    SecAggParams,
    SecAggSession,
    input_spec,
    noise_share,
    request_digest,
)
from fedseg.privacy.secagg.wire import flatten, unflatten

log = logging.getLogger("fedseg.merchant")
STAGES = ("advertise", "share", "masked", "consistency", "unmask")


@dataclass(frozen=True)
class SecureIdentity:
    """Who this merchant is in secure rounds: its roster name, long-term signing key, the
    pinned federation roster, the sessions it already joined, and its own limits."""

    merchant: str
    signing_key: Ed25519PrivateKey
    roster: FederationRoster
    used_sessions: MutableSet[bytes]
    limits: SecAggLimits


class SessionMemory(MutableSet):
    """Session ids this merchant joined, persisted (append + fsync) beside its ledger: a
    server repeating a round could otherwise reuse the old signatures."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ids: set[bytes] = set()
        if path is not None and path.exists():
            self._ids = {bytes.fromhex(line) for line in path.read_text().split() if line}

    def __contains__(self, value: object) -> bool:
        return value in self._ids

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, value: bytes) -> None:
        if value in self._ids:
            return
        self._ids.add(value)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(value.hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def discard(self, value: bytes) -> None:
        raise TypeError("a merchant never forgets a session it joined")


def secure_step(
    node: MerchantNode,
    identity: SecureIdentity,
    node_id: int,
    task: str,
    payload: Mapping[str, Any],
    state: bytes | None,
    plan: AcceptedPlan,
) -> tuple[dict, bytes | None]:
    """Answer one stage; returns (reply payload, state to keep for the next stage)."""
    stage = payload.get("secagg_stage")
    if stage == "advertise":
        return _open(node, identity, node_id, task, payload, plan)
    if stage not in STAGES or state is None:
        raise BadRequest(f"secure aggregation stage {stage!r} without an open round")
    session = pickle.loads(state)
    client: SecAggClient = session["client"]
    message = unflatten({k: v for k, v in payload.items() if k != "secagg_stage"})
    if stage == "share":
        reply = client.share_keys(message)
    elif stage == "masked":
        reply = client.masked_input(session.pop("values"), message)
        node.ledger.charge(session["release"])  # on disk before the masked input leaves
        if client.clipped_:
            log.info("secure round: %d values clipped into the encoding range", client.clipped_)
    elif stage == "consistency":
        reply = client.sign_survivors(message)
    else:
        reply = client.unmask(message)
    return flatten(reply), (None if stage == "unmask" else pickle.dumps(session))


def _open(
    node: MerchantNode,
    identity: SecureIdentity,
    node_id: int,
    task: str,
    payload: Mapping[str, Any],
    plan: AcceptedPlan,
) -> tuple[dict, bytes]:
    if not plan.plan.secure:
        raise BadRequest("the accepted plan has no secure aggregation")
    request = {k: v for k, v in payload.items() if not k.startswith("secagg_")}
    params = SecAggParams(plan.plan.dropout_tolerance, plan.plan.collusion)
    n = len(identity.roster)  # the pinned roster's size, never a number the server sends
    distributed = plan.plan.noise == "distributed"
    share = noise_share(n, params.dropout_tolerance, params.collusion) if distributed else 1.0
    values, release = node.prepare(task, request, plan, NoisePlacement(share))
    session = SecAggSession.create(
        roster=identity.roster, params=params, round_id=int(payload["secagg_round"]),
        request_digest=request_digest(request), vector_spec=input_spec({k: v.shape for k, v in values.items()}),
        max_abs_value=float(payload["secagg_max_abs"]),
    )  # fmt: skip
    client = SecAggClient(
        session, merchant=identity.merchant, node_id=node_id, signing_key=identity.signing_key,
        used_sessions=identity.used_sessions, limits=identity.limits,
    )  # fmt: skip
    state = {"client": client, "values": values, "release": release}
    return flatten(client.advertise_keys()), pickle.dumps(state)
