"""A merchant's side of a secure-aggregation round, kept across the stage messages.

At the first stage the merchant prepares its noisy statistic through the node's one release
path (refusing at once if its cap would not allow it), with its own share of the noise:
under distributed noise, enough that the sum carries the charged σ even when only the fewest
survivors it accepts remain. It charges its own ledger with the release it built just before
the masked encoding leaves — the point after which it can be part of a released sum — and
refuses to help unmask a sum with fewer survivors than it sized its noise for.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from typing import Any

from fedseg.client.node import BadRequest, MerchantNode
from fedseg.client.plan import AcceptedPlan
from fedseg.privacy.releases import minimum_survivors, noise_placement
from fedseg.privacy.secagg import SecAggClient, SecAggConfig
from fedseg.privacy.secagg.errors import SecAggProtocolError
from fedseg.privacy.secagg.wire import flatten, unflatten


def secure_step(
    node: MerchantNode,
    node_id: int,
    task: str,
    payload: Mapping[str, Any],
    state: bytes | None,
    plan: AcceptedPlan,
) -> tuple[dict, bytes | None]:
    """Answer one stage; returns (reply payload, state to keep for the next stage)."""
    stage = payload.get("secagg_stage")
    if stage == "advertise":
        return _open(node, node_id, task, payload, plan)
    if state is None:
        raise BadRequest(f"secure aggregation stage {stage!r} without an open round")
    session = pickle.loads(state)
    client: SecAggClient = session["client"]
    if int(payload.get("round", -1)) != client.round_id:
        raise BadRequest(f"secure aggregation round {payload.get('round')} is not the open round")
    message = unflatten(dict(payload))
    if stage == "share":
        reply = client.share_keys(message)
    elif stage == "masked":
        reply = client.masked_input(session.pop("values"), message)
        node.ledger.charge(session["release"])  # on disk before the masked input leaves
    elif stage == "unmask":
        if len(message.get("survivors", ())) < session["min_survivors"]:
            raise SecAggProtocolError("fewer survivors than this merchant sized its noise for")
        reply = client.unmask(message)
    else:
        raise BadRequest(f"unknown secure aggregation stage {stage!r}")
    return flatten(reply), (None if stage == "unmask" else pickle.dumps(session))


def _open(
    node: MerchantNode, node_id: int, task: str, payload: Mapping[str, Any], plan: AcceptedPlan
) -> tuple[dict, bytes]:
    if not plan.plan.secure:
        raise BadRequest("the accepted plan has no secure aggregation")
    raw = json.loads(str(payload["secagg_config"]))
    raw["vector_spec"] = tuple((name, tuple(shape)) for name, shape in raw["vector_spec"])
    config = SecAggConfig(**raw)  # validates threshold > neighbours / 2 and the encoding range
    min_survivors = minimum_survivors(config.num_clients, plan.plan.dropout_tolerance)
    collusion = max(plan.plan.collusion, node.policy.collusion)
    placement = noise_placement(
        plan.plan.noise, config.num_clients, plan.plan.dropout_tolerance, collusion
    )
    request = {k: v for k, v in payload.items() if not k.startswith("secagg_")}
    values, release = node.prepare(task, request, plan, placement)
    expected = dict(config.vector_spec)
    if {k: v.shape for k, v in values.items()} != expected:
        raise BadRequest(f"secure round expects parts {expected}, this task gives other shapes")
    client = SecAggClient(node_id, config, round_id=int(payload["secagg_round"]))
    session = {
        "client": client,
        "values": values,
        "release": release,
        "min_survivors": min_survivors,
    }
    return flatten(client.advertise_keys()), pickle.dumps(session)
