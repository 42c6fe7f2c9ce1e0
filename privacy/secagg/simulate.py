"""In-memory driver running every client and the server of one round in this process.

Used by the tests and the benchmark; the Flower apps call the same stage methods.
"""

from __future__ import annotations

import numpy as np
from fedseg.privacy.secagg.client import SecAggClient
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.server import SecAggServer


def run_secagg_round(
    inputs: dict[int, dict[str, np.ndarray]],
    config: SecAggConfig,
    *,
    round_id: int = 0,
    drop_before_shares: frozenset[int] | set[int] = frozenset(),
    drop_before_masked: frozenset[int] | set[int] = frozenset(),
    drop_after_masked: frozenset[int] | set[int] = frozenset(),
) -> dict[str, np.ndarray]:
    """Sum of the inputs of every client that sent a masked input.

    Clients in ``drop_before_shares`` vanish after advertising keys, those in
    ``drop_before_masked`` after sharing keys, those in ``drop_after_masked`` after
    sending their masked input (their input still counts).
    """
    clients = {node: SecAggClient(node, config, round_id=round_id) for node in inputs}
    server = SecAggServer(config, round_id=round_id)
    roster = server.collect_keys({node: c.advertise_keys() for node, c in clients.items()})
    sharing = [node for node in clients if node not in drop_before_shares]
    inboxes = server.collect_shares({node: clients[node].share_keys(roster) for node in sharing})
    masking = [node for node in inboxes if node not in drop_before_masked]
    lists = server.collect_masked(
        {node: clients[node].masked_input(inputs[node], inboxes[node]) for node in masking}
    )
    answering = [node for node in lists if node not in drop_after_masked]
    return server.collect_unmask({node: clients[node].unmask(lists[node]) for node in answering})
