"""In-memory driver running every merchant and the server of one round in this process.

Used by the tests and the benchmark; the Flower apps call the same stage methods. Keys
come from :func:`simulation_signing_key` (seeded), so never use this for a deployment.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
from fedseg.privacy.secagg.client import SecAggClient
from fedseg.privacy.secagg.digest import request_digest
from fedseg.privacy.secagg.params import SecAggParams
from fedseg.privacy.secagg.roster import FederationRoster, simulation_roster, simulation_signing_key
from fedseg.privacy.secagg.server import SecAggServer
from fedseg.privacy.secagg.session import SecAggSession

STAGES = ("advertise", "share", "masked", "consistency", "unmask")


@dataclass
class RoundOutcome:
    sums: dict[str, np.ndarray]
    contributors: list[str]
    session: SecAggSession
    stage_seconds: dict[str, float] = field(default_factory=dict)


def simulation_session(
    merchants: Collection[str],
    *,
    vector_spec,
    max_abs_value: float,
    params: SecAggParams | None = None,
    seed: int = 0,
    round_id: int = 0,
    request: Mapping | None = None,
    roster: FederationRoster | None = None,
) -> SecAggSession:
    """Session of a simulated round (roster from ``seed`` over ``merchants`` by default)."""
    return SecAggSession.create(
        roster=roster or simulation_roster(seed, merchants), params=params or SecAggParams(), round_id=round_id,
        request_digest=request_digest(request or {"round": round_id}), vector_spec=vector_spec,
        max_abs_value=max_abs_value,
    )  # fmt: skip


def run_secagg_round(
    inputs: Mapping[str, Mapping[str, np.ndarray]],
    *,
    max_abs_value: float,
    params: SecAggParams | None = None,
    seed: int = 0,
    round_id: int = 0,
    roster: FederationRoster | None = None,
    drop_before_shares: Collection[str] = (),
    drop_before_masked: Collection[str] = (),
    drop_before_signing: Collection[str] = (),
    drop_before_unmask: Collection[str] = (),
) -> RoundOutcome:
    """Sum of the inputs of the merchants that sent a masked input.

    ``inputs`` maps merchant names (roster members; a roster member without inputs never
    answers) to named arrays. A merchant in ``drop_before_X`` stops answering at stage X;
    those dropping after their masked input (signing, unmask) still count in the sum.
    """
    first = next(iter(inputs.values()))
    spec = tuple((name, np.shape(array)) for name, array in first.items())
    session = simulation_session(
        list(inputs), vector_spec=spec, max_abs_value=max_abs_value, params=params, seed=seed,
        round_id=round_id, roster=roster,
    )  # fmt: skip
    node_of = {m: 1000 + i for i, m in enumerate(sorted(inputs))}
    name_of = {node: m for m, node in node_of.items()}
    clients = {
        node_of[m]: SecAggClient(
            session,
            merchant=m,
            node_id=node_of[m],
            signing_key=simulation_signing_key(seed, m),
            used_sessions=set(),
        )
        for m in inputs
    }
    server, timings = SecAggServer(session), {}
    gone = {stage: {node_of[m] for m in drops} for stage, drops in zip(STAGES[1:], (
        drop_before_shares, drop_before_masked, drop_before_signing, drop_before_unmask), strict=True)}  # fmt: skip
    answers = {
        "advertise": lambda c, m: c.advertise_keys(),
        "share": lambda c, m: c.share_keys(m),
        "masked": lambda c, m: c.masked_input(inputs[c.merchant], m),
        "consistency": lambda c, m: c.sign_survivors(m),
        "unmask": lambda c, m: c.unmask(m),
    }
    collects = (server.collect_keys, server.collect_shares, server.collect_masked,
                server.collect_signatures, server.collect_unmask)  # fmt: skip
    messages = {node: None for node in clients}
    for name, collect in zip(STAGES, collects, strict=True):
        start = time.perf_counter()
        dropped = gone.get(name, set())
        replies = {n: answers[name](clients[n], m) for n, m in messages.items() if n not in dropped}
        messages = collect(replies)
        timings[name] = time.perf_counter() - start
    contributors = sorted(name_of[n] for n in server.contributors_)
    return RoundOutcome(messages, contributors, session, timings)
