"""Client half of the secure-aggregation round as a four-stage state machine.

Stages (each a function of the server's broadcast, returning the reply payload):
``advertise_keys`` -> ``share_keys`` -> ``masked_input`` -> ``unmask``. A broadcast that
breaks the rules raises :class:`SecAggProtocolError`; the client then takes no further part.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from fedseg.privacy.secagg import crypto, shamir
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.encoding import encode
from fedseg.privacy.secagg.errors import SecAggProtocolError
from fedseg.privacy.secagg.graph import NeighbourGraph, roster_digest
from fedseg.privacy.secagg.masking import pair_mask, self_mask
from fedseg.privacy.secagg.messages import (
    SHARE_PLAINTEXT_BYTES,
    has_round,
    is_node_id,
    key_entry,
    parse_roster,
    share_associated_data,
    sorted_ids,
)


class SecAggClient:
    """One merchant's side of one round; fresh keys and self-mask seed per instance."""

    def __init__(self, node_id: int, config: SecAggConfig, *, round_id: int) -> None:
        if not is_node_id(node_id):
            raise SecAggProtocolError(f"node_id must be an int in [0, 2^64), got {node_id!r}")
        self.node_id, self.config, self.round_id = node_id, config, round_id
        self._context = crypto.round_context(round_id)
        self._stage = "advertise"

    def __getstate__(self) -> dict[str, Any]:
        """Picklable state (private keys as raw bytes), so a merchant can keep a round
        open across messages in its own node state. It never leaves the merchant."""
        state = dict(self.__dict__)
        for name in ("_mask_sk", "_enc_sk"):
            if name in state:
                state[name] = crypto.private_bytes(state[name])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        for name in ("_mask_sk", "_enc_sk"):
            if name in state:
                state[name] = X25519PrivateKey.from_private_bytes(state[name])
        self.__dict__.update(state)

    def _enter(self, stage: str, following: str) -> None:
        if self._stage != stage:
            raise SecAggProtocolError(f"client {self.node_id}: {stage} called during {self._stage}")
        self._stage = following

    def advertise_keys(self) -> dict[str, Any]:
        """Stage 0: two fresh X25519 public keys and a commitment to the self-mask seed."""
        self._enter("advertise", "share")
        self._mask_sk, mask_pk = crypto.new_key_pair()
        self._enc_sk, enc_pk = crypto.new_key_pair()
        self._self_seed = os.urandom(32)
        commitment = crypto.commitment(self._context, self.node_id, self._self_seed)
        return {
            "round": self.round_id,
            "node_id": self.node_id,
            **key_entry(mask_pk, enc_pk, commitment),
        }

    def share_keys(self, broadcast: dict[str, Any]) -> dict[str, Any]:
        """Stage 1: Shamir-share the self-mask seed and mask key, encrypted per neighbour."""
        self._enter("share", "masked")
        ids, keys = self._parse_roster(broadcast)
        graph = NeighbourGraph(ids, self.config.neighbours, roster_digest(self._context, ids, keys))
        self._neighbours = graph.neighbours_of(self.node_id)
        self._peer_keys = {}
        for peer in self._neighbours:
            row = keys[graph.rank(peer)].tobytes()
            self._peer_keys[peer] = (
                row[: crypto.KEY_BYTES],
                row[crypto.KEY_BYTES : 2 * crypto.KEY_BYTES],
            )
        if len(self._neighbours) < self.config.threshold:
            raise SecAggProtocolError(
                f"only {len(self._neighbours)} neighbours, threshold is {self.config.threshold}"
            )
        secrets = np.concatenate(
            [
                shamir.secret_to_chunks(self._self_seed),
                shamir.secret_to_chunks(crypto.private_bytes(self._mask_sk)),
            ]
        )
        points = np.array([graph.share_point(j) for j in self._neighbours], dtype=np.int64)
        shares = shamir.share(secrets, points, self.config.threshold)
        self._receive_keys, ciphertexts = {}, {}
        for row, peer in zip(shares, self._neighbours, strict=True):
            shared = crypto.exchange(self._enc_sk, self._peer_keys[peer][1])
            send_key, self._receive_keys[peer] = crypto.directional_keys(
                shared, self._context, self.node_id, peer
            )
            plaintext = shamir.share_to_bytes(row[: shamir.CHUNKS]) + shamir.share_to_bytes(
                row[shamir.CHUNKS :]
            )
            aad = share_associated_data(self._context, self.node_id, peer)
            ciphertexts[peer] = crypto.encrypt(send_key, plaintext, aad)
        return {"round": self.round_id, "node_id": self.node_id, "shares": ciphertexts}

    def masked_input(
        self, values: dict[str, np.ndarray], broadcast: dict[str, Any]
    ) -> dict[str, Any]:
        """Stage 2: keep the shares addressed to us; send input + self mask + pair masks."""
        encoded = encode(values, self.config)  # range errors surface before any state change
        self._enter("masked", "unmask")
        inbox = broadcast.get("inbox") if has_round(broadcast, self.round_id) else None
        if not isinstance(inbox, dict):
            raise SecAggProtocolError(f"client {self.node_id}: malformed share inbox")
        neighbours = set(self._neighbours)
        self._partners = sorted(peer for peer in inbox if peer in neighbours)
        if len(self._partners) < self.config.threshold:
            raise SecAggProtocolError(
                f"client {self.node_id}: {len(self._partners)} neighbours "
                f"shared keys, threshold is {self.config.threshold}"
            )
        self._held = {}
        for peer in self._partners:
            shares = self._open_share(peer, inbox[peer])
            if shares is not None:  # an unauthentic share is ignored, never revealed
                self._held[peer] = shares
        masked = encoded + self_mask(self._self_seed, encoded.size)
        for peer in self._partners:
            mask = pair_mask(
                self._mask_sk,
                self.node_id,
                peer,
                self._peer_keys[peer][0],
                self._context,
                encoded.size,
            )
            masked = masked + mask if self.node_id < peer else masked - mask
        return {"round": self.round_id, "node_id": self.node_id, "masked": masked}

    def unmask(self, broadcast: dict[str, Any]) -> dict[str, Any]:
        """Stage 3: reveal self-mask shares of survivors XOR key shares of dropped clients."""
        self._enter("unmask", "done")
        ok = has_round(broadcast, self.round_id)
        survivors = sorted_ids(broadcast.get("survivors")) if ok else None
        dropped = sorted_ids(broadcast.get("dropped")) if ok else None
        if survivors is None or dropped is None or np.intersect1d(survivors, dropped).size:
            raise SecAggProtocolError(f"client {self.node_id}: malformed survivor/dropped lists")
        if not np.isin(self.node_id, survivors) or survivors.size < self.config.threshold:
            raise SecAggProtocolError(f"client {self.node_id}: survivor list is inconsistent")
        held = np.array(sorted(self._held), dtype=np.uint64)
        revealed_self = held[np.isin(held, survivors)].tolist()
        revealed_key = held[np.isin(held, dropped)].tolist()
        self_mask_shares = {p: self._held[p][0] for p in revealed_self}
        key_shares = {p: self._held[p][1] for p in revealed_key}
        return {
            "round": self.round_id,
            "node_id": self.node_id,
            "self_mask_shares": self_mask_shares,
            "key_shares": key_shares,
        }

    def _parse_roster(self, broadcast: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        parsed = parse_roster(broadcast, self.round_id)
        if parsed is None:
            raise SecAggProtocolError(f"client {self.node_id}: malformed roster")
        ids, keys = parsed
        rank = int(np.searchsorted(ids, np.uint64(self.node_id)))
        mine = crypto.public_of(self._mask_sk) + crypto.public_of(self._enc_sk)
        if rank == ids.size or int(ids[rank]) != self.node_id or keys[rank, :64].tobytes() != mine:
            raise SecAggProtocolError(f"client {self.node_id}: roster misstates our own keys")
        return ids, keys

    def _open_share(self, peer: int, blob: Any) -> tuple[bytes, bytes] | None:
        aad = share_associated_data(self._context, peer, self.node_id)
        plaintext = crypto.decrypt(self._receive_keys[peer], blob, aad)
        if plaintext is None or len(plaintext) != SHARE_PLAINTEXT_BYTES:
            return None
        half = shamir.SHARE_BYTES
        return plaintext[:half], plaintext[half:]
