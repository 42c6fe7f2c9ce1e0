"""Server half of the secure-aggregation round.

Each ``collect_*`` stage takes the replies that arrived in time ({node_id: payload}),
discards late, malformed or inconsistent ones (that client counts as dropped) and returns
the next broadcast. ``collect_unmask`` returns the decoded sums or raises
:class:`SecAggAborted`; nothing else about any single client is ever exposed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedseg.privacy.secagg import crypto
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.encoding import decode_sum
from fedseg.privacy.secagg.errors import SecAggAborted
from fedseg.privacy.secagg.graph import NeighbourGraph, roster_digest
from fedseg.privacy.secagg.messages import (
    SHARE_CIPHERTEXT_BYTES,
    has_round,
    is_blob,
    is_node_id,
    parse_key_entry,
    roster_message,
)
from fedseg.privacy.secagg.unmasking import Unmasker


class SecAggServer:
    """Drives one round; ``contributors_`` lists whose inputs are in the released sum."""

    def __init__(self, config: SecAggConfig, *, round_id: int) -> None:
        self.config, self.round_id = config, round_id
        self._context = crypto.round_context(round_id)
        self._stage = "keys"
        self.contributors_: list[int] = []

    def _enter(self, stage: str, following: str) -> None:
        if self._stage != stage:
            raise SecAggAborted(f"server stage {stage} called during {self._stage}")
        self._stage = following

    def _require(self, count: int, what: str) -> None:
        if count < self.config.threshold:
            self._stage = "aborted"
            raise SecAggAborted(
                f"only {count} clients {what}; threshold is {self.config.threshold}"
            )

    def collect_keys(self, replies: dict[int, Any]) -> dict[str, Any]:
        """Stage 0 -> roster broadcast (same for every client)."""
        self._enter("keys", "shares")
        entries = {}
        for node_id, payload in replies.items():
            keys = parse_key_entry(payload) if has_round(payload, self.round_id) else None
            if is_node_id(node_id) and keys is not None and payload.get("node_id") == node_id:
                entries[node_id] = keys
        entries = _without_repeated_keys(entries)
        if len(entries) > self.config.num_clients:
            self._stage = "aborted"
            raise SecAggAborted(
                f"{len(entries)} clients exceed num_clients={self.config.num_clients}"
            )
        self._keys = entries
        roster = roster_message(self.round_id, entries)
        ids, keys = roster["node_ids"], roster["public_keys"]
        self._graph = NeighbourGraph(
            ids, self.config.neighbours, roster_digest(self._context, ids, keys)
        )
        self._require(self._graph.degree, f"neighbour each client ({len(entries)} sent keys)")
        return roster

    def collect_shares(self, replies: dict[int, Any]) -> dict[int, dict[str, Any]]:
        """Stage 1 -> per-client inbox of the share ciphertexts addressed to it."""
        self._enter("shares", "masked")
        self._neighbours = {node: set(self._graph.neighbours_of(node)) for node in self._keys}
        sent = {
            node: payload["shares"]
            for node, payload in replies.items()
            if node in self._keys and self._valid_shares(node, payload)
        }
        self._partners = {node: sorted(set(sent) & self._neighbours[node]) for node in sent}
        return {
            node: {
                "round": self.round_id,
                "inbox": {peer: sent[peer][node] for peer in self._partners[node]},
            }
            for node in sent
        }

    def collect_masked(self, replies: dict[int, Any]) -> dict[int, dict[str, Any]]:
        """Stage 2 -> survivor / dropped lists for the clients whose masked input arrived."""
        self._enter("masked", "unmask")
        size = self.config.vector_length
        self._masked = {
            node: payload["masked"]
            for node, payload in replies.items()
            if node in self._partners
            and has_round(payload, self.round_id)
            and _is_word_vector(payload.get("masked"), size)
        }
        self._require(len(self._masked), "sent masked inputs")
        survivors = np.array(sorted(self._masked), dtype=np.uint64)
        dropped = np.array(sorted(set(self._partners) - set(self._masked)), dtype=np.uint64)
        message = {"round": self.round_id, "survivors": survivors, "dropped": dropped}
        return {node: dict(message) for node in sorted(self._masked)}

    def collect_unmask(self, replies: dict[int, Any]) -> dict[str, np.ndarray]:
        """Stage 3 -> the decoded sums of the survivors' inputs, or :class:`SecAggAborted`."""
        self._enter("unmask", "done")
        unmasker = Unmasker(self._context, self._graph, self._keys, self._partners, self.config)
        answered = {
            node: payload
            for node, payload in replies.items()
            if node in self._masked and has_round(payload, self.round_id)
        }
        try:
            total = unmasker.unmask(self._masked, answered)
        except SecAggAborted:
            self._stage = "aborted"
            raise
        self.contributors_ = sorted(self._masked)
        return decode_sum(total, self.config)

    def _valid_shares(self, node: int, payload: Any) -> bool:
        shares = payload.get("shares") if has_round(payload, self.round_id) else None
        return (
            payload.get("node_id") == node
            and isinstance(shares, dict)
            and set(shares) == self._neighbours[node]
            and all(is_blob(blob, SHARE_CIPHERTEXT_BYTES) for blob in shares.values())
        )


def _without_repeated_keys(entries: dict[int, tuple[bytes, ...]]) -> dict[int, tuple[bytes, ...]]:
    """Drop every client whose public key also appears for another client."""
    seen: dict[bytes, int] = {}
    for keys in entries.values():
        for key in keys[:2]:
            seen[key] = seen.get(key, 0) + 1
    return {node: keys for node, keys in entries.items() if seen[keys[0]] == seen[keys[1]] == 1}


def _is_word_vector(value: Any, size: int) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.uint64 and value.shape == (size,)
