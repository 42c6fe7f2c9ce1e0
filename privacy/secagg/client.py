"""A merchant's side of one secure-aggregation round, as a five-stage state machine.

``advertise_keys`` -> ``share_keys`` -> ``masked_input`` -> ``sign_survivors`` ->
``unmask``. Each stage takes the server's message and returns the reply payload; a
message breaking the rules raises :class:`SecAggProtocolError` and the merchant takes no
further part. Nothing is revealed before the consistency round has certified S.
"""

from __future__ import annotations

import os
from collections.abc import MutableSet
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fedseg.privacy.secagg import crypto, signing
from fedseg.privacy.secagg.client_checks import (
    PeerKeys,
    check_certificate,
    check_owner_statements,
    check_survivor_set,
    verified_neighbours,
)
from fedseg.privacy.secagg.encoding import encode
from fedseg.privacy.secagg.errors import SecAggConfigError, SecAggProtocolError
from fedseg.privacy.secagg.masking import pair_mask, self_mask
from fedseg.privacy.secagg.messages import as_ranks_u32, is_node_id
from fedseg.privacy.secagg.params import SecAggLimits, SecAggParams
from fedseg.privacy.secagg.session import SecAggSession
from fedseg.privacy.secagg.sharing import encrypted_shares, open_share

_PRIVATE = ("_mask_sk", "_enc_sk")


class SecAggClient:
    """One merchant in one round: fresh round keys and self-mask seed per instance.

    ``signing_key`` is the merchant's long-term Ed25519 key, whose public half the pinned
    roster lists under ``merchant``. ``used_sessions`` holds the session ids the merchant
    has taken part in (keep it persistent, beside its ledger): a server repeating a round
    id and request would recreate the session and could reuse its old signatures. ``clipped_`` counts input entries clipped into range;
    it stays with the merchant (log it locally, never send it).
    """

    def __init__(
        self,
        session: SecAggSession,
        *,
        merchant: str,
        node_id: int,
        signing_key: Ed25519PrivateKey,
        used_sessions: MutableSet[bytes],
        limits: SecAggLimits | None = None,
    ) -> None:
        config, limits = session.config, limits or SecAggLimits()
        limits.check(SecAggParams(config.dropout_tolerance, config.collusion), config.vector_length)
        rank = session.roster.rank(merchant)
        if rank is None:
            raise SecAggConfigError(f"merchant {merchant!r} is not in the pinned roster")
        if signing_key.public_key().public_bytes_raw() != session.roster.public_keys[rank]:
            raise SecAggConfigError(f"signing key of {merchant!r} does not match the pinned roster")
        if not is_node_id(node_id):
            raise SecAggConfigError("node_id must be an int in [0, 2^64)")
        if session.session_id in used_sessions:  # a replayed round could reuse old signatures
            raise SecAggProtocolError(f"merchant {merchant!r} already took part in this session")
        used_sessions.add(session.session_id)
        self.session, self.merchant, self.rank, self.node_id = session, merchant, rank, node_id
        self._signing_key = signing_key
        self._context = session.session_id
        self._stage = "advertise"
        self._revealed: dict[int, str] = {}  # owner rank -> "self_mask" | "key", once each
        self.clipped_ = 0

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (private keys as raw bytes) so the merchant can keep the round in its
        own node state between messages; the state never leaves the merchant."""
        state = dict(self.__dict__)
        for name in _PRIVATE:
            if name in state:
                state[name] = crypto.private_bytes(state[name])
        state["_signing_key"] = self._signing_key.private_bytes_raw()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in _PRIVATE:
            if name in state:
                state[name] = X25519PrivateKey.from_private_bytes(state[name])
        state["_signing_key"] = Ed25519PrivateKey.from_private_bytes(state["_signing_key"])
        self.__dict__.update(state)

    def _enter(self, stage: str) -> None:
        """Refuse a stage out of order; until the stage succeeds the client counts as
        aborted, so a refused message ends its part in the round."""
        if self._stage != stage:
            raise SecAggProtocolError(
                f"merchant rank {self.rank}: {stage} called during {self._stage}"
            )
        self._stage = "aborted"

    def _reply(self, **fields: Any) -> dict[str, Any]:
        return {"round": self.session.round_id, **fields}

    def _check_round(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or message.get("round") != self.session.round_id:
            raise SecAggProtocolError(f"merchant rank {self.rank}: message of another round")
        return message

    def advertise_keys(self) -> dict[str, Any]:
        """Stage 0: two fresh X25519 keys and a self-mask commitment, signed with the
        request digest, so neighbours can tell our keys from a server's substitutes."""
        self._enter("advertise")
        self._mask_sk, mask_pk = crypto.new_key_pair()
        self._enc_sk, enc_pk = crypto.new_key_pair()
        self._self_seed = os.urandom(32)
        self._keys = mask_pk + enc_pk + crypto.commitment(self._context, self.rank, self._self_seed)
        digest = self.session.request_digest
        statement = signing.advert_message(
            self._context, self.rank, self.node_id, self.merchant, self._keys, digest
        )
        self._stage = "share"
        return self._reply(
            merchant=self.merchant, node_id=self.node_id, keys=self._keys, request_digest=digest,
            signature=signing.sign(self._signing_key, statement),
        )  # fmt: skip

    def share_keys(self, message: dict[str, Any]) -> dict[str, Any]:
        """Stage 1: verify the neighbours' advertisements; send each an encrypted share of
        the self-mask seed and of the mask key."""
        self._enter("share")
        self._peers: dict[int, PeerKeys] = verified_neighbours(
            self.session, self.rank, self.node_id, self._keys, self._check_round(message)
        )
        threshold = self.session.config.threshold
        if len(self._peers) < threshold:
            raise SecAggProtocolError(
                f"merchant rank {self.rank}: {len(self._peers)} neighbours advertised, threshold {threshold}"
            )
        ciphertexts, self._receive_keys = encrypted_shares(
            self._context, self.rank, (self._self_seed, crypto.private_bytes(self._mask_sk)),
            self._enc_sk, {p: keys.enc_pk for p, keys in self._peers.items()}, threshold,
        )  # fmt: skip
        self._stage = "masked"
        return self._reply(shares=ciphertexts)

    def masked_input(
        self, values: dict[str, np.ndarray], message: dict[str, Any]
    ) -> dict[str, Any]:
        """Stage 2: keep the shares addressed to us; send input + self mask + pair masks,
        and a signed list of the neighbours we masked with."""
        encoded, self.clipped_ = encode(values, self.session.config)  # shape errors first
        self._enter("masked")
        inbox = self._check_round(message).get("inbox")
        if not isinstance(inbox, dict) or not set(inbox) <= set(self._peers):
            raise SecAggProtocolError(f"merchant rank {self.rank}: malformed share inbox")
        self._partners = np.array(sorted(inbox), dtype=np.int64)
        if self._partners.size < self.session.config.threshold:
            raise SecAggProtocolError(
                f"merchant rank {self.rank}: {self._partners.size} neighbours shared keys, "
                f"threshold {self.session.config.threshold}"
            )
        self._held = {}
        for peer in self._partners.tolist():
            opened = open_share(
                self._context, self.rank, peer, self._receive_keys[peer], inbox[peer]
            )
            if opened is not None:  # an unauthentic share is never revealed
                self._held[peer] = opened
        masked = encoded + self_mask(self._self_seed, encoded.size)
        for peer in self._partners.tolist():
            mask = pair_mask(
                self._mask_sk, self.rank, peer, self._peers[peer].mask_pk, self._context, encoded.size
            )  # fmt: skip
            masked = masked + mask if self.rank < peer else masked - mask
        statement = signing.partners_message(
            self._context, self.rank, self._keys[:32], self._partners
        )
        self._stage = "consistency"
        return self._reply(
            masked=masked, partners=as_ranks_u32(self._partners),
            partners_signature=signing.sign(self._signing_key, statement),
        )  # fmt: skip

    def sign_survivors(self, message: dict[str, Any]) -> dict[str, Any]:
        """Stage 3 (consistency): sign the survivor set S, once, if it is acceptable."""
        self._enter("consistency")
        self._survivors = check_survivor_set(
            self.session, self.rank, self._partners, self._check_round(message)
        )
        statement = signing.survivors_message(self._context, self._survivors)
        self._stage = "unmask"
        return self._reply(signature=signing.sign(self._signing_key, statement))

    def unmask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Stage 4: with S certified, reveal self-mask shares of partners in S and mask-key
        shares of partners outside S, never both for one owner."""
        self._enter("unmask")
        message, survivors = self._check_round(message), self._survivors
        check_certificate(self.session, self.rank, survivors, message)
        held = np.array(sorted(self._held), dtype=np.int64)
        alive = held[np.isin(held, survivors)].tolist()
        mask_keys = {p: self._peers[p].mask_pk for p in alive}
        check_owner_statements(self.session, self.rank, survivors, mask_keys, message)
        gone = held[~np.isin(held, survivors)].tolist()
        self_mask_shares = {p: self._reveal(p, "self_mask", 0) for p in alive}
        key_shares = {p: self._reveal(p, "key", 1) for p in gone}
        self._stage = "done"
        return self._reply(self_mask_shares=self_mask_shares, key_shares=key_shares)

    def _reveal(self, owner: int, kind: str, index: int) -> bytes:
        if self._revealed.setdefault(owner, kind) != kind:
            raise SecAggProtocolError(
                f"merchant rank {self.rank}: both secrets of rank {owner} requested"
            )
        return self._held[owner][index]
