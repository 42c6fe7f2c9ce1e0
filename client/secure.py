"""A merchant's side of a secure-aggregation round, kept across the four stage messages.

The merchant computes its noisy release at the first stage (refusing at once if its cap
would not allow it) and charges its ledger just before the masked (uniformly
random-looking) encoding leaves, the point after which it can be part of a released
sum; a round that aborts earlier costs nothing. Before revealing its
unmasking shares it checks how many merchants' noise shares the sum will hold and
charges its own ledger for any shortfall, so its cap holds even when others drop.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from typing import Any

from fedseg.client.node import BadRequest, MerchantNode
from fedseg.privacy.accounting import Release
from fedseg.privacy.ledger import BudgetExceeded
from fedseg.privacy.secagg import SecAggClient, SecAggConfig
from fedseg.privacy.secagg.noise import topup_noise_multiplier
from fedseg.privacy.secagg.wire import flatten, unflatten


def secure_step(
    node: MerchantNode, node_id: int, task: str, payload: Mapping[str, Any], state: bytes | None
) -> tuple[dict, bytes | None]:
    """Answer one stage; returns (reply payload, state to keep for the next stage)."""
    stage = payload.get("secagg_stage")
    if stage == "advertise":
        return _open(node, node_id, task, payload)
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
        # Once this reply leaves, our statistics can be part of a released sum.
        node.ledger.charge(session["release_charged"])
    elif stage == "unmask":
        z_top = topup_noise_multiplier(
            session["z"], survivors=len(message["survivors"]), noise_clients=session["planned"]
        )
        if z_top is not None:  # refuse (BudgetExceeded) rather than reveal an overspent sum
            node.ledger.charge(
                Release(name=f"{session['release']}_dropout_topup", noise_multiplier=z_top)
            )
        reply = client.unmask(message)
    else:
        raise BadRequest(f"unknown secure aggregation stage {stage!r}")
    return flatten(reply), (None if stage == "unmask" else pickle.dumps(session))


def _open(
    node: MerchantNode, node_id: int, task: str, payload: Mapping[str, Any]
) -> tuple[dict, bytes]:
    raw = json.loads(str(payload["secagg_config"]))
    raw["vector_spec"] = tuple((name, tuple(shape)) for name, shape in raw["vector_spec"])
    config = SecAggConfig(**raw)  # validates threshold > neighbours / 2 and the encoding range
    planned = int(payload["noise_clients"])
    if not 1 <= planned <= config.num_clients:
        raise BadRequest(f"'noise_clients' must be in [1, {config.num_clients}], got {planned}")
    request = {k: v for k, v in payload.items() if not k.startswith(("secagg_", "noise_clients"))}
    z, release = float(payload["noise_multiplier"]), str(payload["release"])
    charged = Release.of_request(payload)
    if node.ledger.would_exceed(charged):
        raise BudgetExceeded(f"request {release!r} would exceed this merchant's privacy cap")
    values = node.handle(task, request, noise_share=1.0 / planned, charge=False)
    expected = dict(config.vector_spec)
    if {k: v.shape for k, v in values.items()} != expected:
        raise BadRequest(f"secure round expects parts {expected}, this task gives other shapes")
    client = SecAggClient(node_id, config, round_id=int(payload["secagg_round"]))
    session = {
        "client": client,
        "values": values,
        "z": z,
        "planned": planned,
        "release": release,
        "release_charged": charged,
    }
    reply = client.advertise_keys()
    return flatten(reply), pickle.dumps(session)
