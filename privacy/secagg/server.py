"""Server half of the secure-aggregation round.

Each ``collect_*`` stage takes the replies that arrived in time ({node_id: payload}),
discards late, oversized, malformed or unauthentic ones (that merchant counts as
dropped) and returns the next messages ({node_id: payload}). ``collect_unmask`` returns
the decoded sum or raises :class:`SecAggAborted`, releasing nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedseg.privacy.secagg import signing
from fedseg.privacy.secagg.encoding import decode_sum
from fedseg.privacy.secagg.errors import SecAggAborted
from fedseg.privacy.secagg.messages import (
    SHARE_CIPHERTEXT_BYTES,
    as_ranks_u32,
    is_blob,
    rank_array,
    rank_map,
    well_formed,
    word_vector,
)
from fedseg.privacy.secagg.server_keys import Advert, accepted_adverts, advert_lists
from fedseg.privacy.secagg.session import SecAggSession
from fedseg.privacy.secagg.survivors import unsafe_members, valid_signers
from fedseg.privacy.secagg.unmasking import Unmasker


class SecAggServer:
    """Drives one round. ``contributors_`` lists the node ids whose inputs are in the sum."""

    def __init__(self, session: SecAggSession) -> None:
        self.session, self.config = session, session.config
        self.round_id = session.round_id
        self._stage = "keys"
        self.contributors_: list[int] = []

    def _enter(self, stage: str, following: str) -> None:
        if self._stage != stage:
            raise SecAggAborted(f"server stage {stage} called during {self._stage}")
        self._stage = following

    def _abort(self, message: str) -> SecAggAborted:
        self._stage = "aborted"
        return SecAggAborted(message)

    def _need_survivors(self, count: int, what: str) -> None:
        config = self.config
        if count < config.min_survivors:
            raise self._abort(
                f"only {count} of {config.num_clients} merchants {what}; the round needs "
                f"m_min = {config.min_survivors} (dropout tolerance {config.dropout_tolerance}). "
                "Raise the secure-aggregation dropout tolerance (SecAggParams.dropout_tolerance, "
                "below (1 - collusion) / 2) or bring more merchants online"
            )

    def collect_keys(self, replies: dict[int, Any]) -> dict[int, dict[str, Any]]:
        """Stage 0 -> to each merchant, the signed advertisements of its graph neighbours."""
        self._enter("keys", "shares")
        self._adverts: dict[int, Advert] = accepted_adverts(self.session, replies)
        self._need_survivors(len(self._adverts), "sent valid key advertisements")
        self._node = {a.rank: node for node, a in self._adverts.items()}
        return advert_lists(self.session, self._adverts, self._node)

    def collect_shares(self, replies: dict[int, Any]) -> dict[int, dict[str, Any]]:
        """Stage 1 -> to each merchant, the share ciphertexts its neighbours addressed to it."""
        self._enter("shares", "masked")
        graph, sent = self.session.graph, {}
        for node, payload in replies.items():
            advert = self._adverts.get(node)
            if advert is None or not well_formed(payload, "share", self.round_id):
                continue
            expected = {int(r) for r in graph.neighbours_of(advert.rank) if int(r) in self._node}
            shares = rank_map(payload["shares"], expected, SHARE_CIPHERTEXT_BYTES)
            if shares is not None and set(shares) == expected:
                sent[advert.rank] = shares
        self._need_survivors(len(sent), "shared their keys")
        self._partners = {
            rank: np.array(sorted(p for p in shares if p in sent), dtype=np.int64)
            for rank, shares in sent.items()
        }
        return {
            self._node[rank]: {
                "round": self.round_id,
                "inbox": {p: sent[p][rank] for p in self._partners[rank].tolist()},
            }
            for rank in sent
        }

    def collect_masked(self, replies: dict[int, Any]) -> dict[int, dict[str, Any]]:
        """Stage 2 -> the survivor set S to every member (abort if some member is unsafe)."""
        self._enter("masked", "signatures")
        self._masked, self._statements = {}, {}
        for node, payload in replies.items():
            advert = self._adverts.get(node)
            if advert is None or advert.rank not in self._partners:
                continue
            if self._valid_masked(advert.rank, payload):
                self._masked[advert.rank] = payload["masked"]
                self._statements[advert.rank] = payload["partners_signature"]
        self._need_survivors(len(self._masked), "sent usable masked inputs")
        unsafe = unsafe_members(self.session, set(self._masked), self._partners)
        if unsafe:
            raise self._abort(
                f"merchant rank {unsafe[0]} kept no surviving ring neighbour on one side "
                f"({len(unsafe)} such survivors): the merchants would refuse to unmask. This "
                "has probability <= 2^-20 within the dropout tolerance; rerun the round"
            )
        self._survivors = np.array(sorted(self._masked), dtype=np.int64)
        message = {"round": self.round_id, "survivors": as_ranks_u32(self._survivors)}
        return {self._node[r]: dict(message) for r in self._survivors.tolist()}

    def collect_signatures(self, replies: dict[int, Any]) -> dict[int, dict[str, Any]]:
        """Stage 3 -> the certificate (the survivors' signatures on S) and, for each
        merchant, the partner statements of its partners in S."""
        self._enter("signatures", "unmask")
        in_s = set(self._survivors.tolist())
        signed = {}
        for node, payload in replies.items():
            advert = self._adverts.get(node)
            if (
                advert is not None
                and advert.rank in in_s
                and well_formed(payload, "consistency", self.round_id)
            ):
                if is_blob(payload["signature"], signing.SIGNATURE_BYTES):
                    signed[advert.rank] = payload["signature"]
        signers = np.array(sorted(signed), dtype=np.int64)
        signatures = np.frombuffer(b"".join(signed[r] for r in signers.tolist()), np.uint8).reshape(
            -1, 64
        )
        valid = valid_signers(self.session, self._survivors, signers, signatures)
        self._need_survivors(int(valid.sum()), "signed the survivor set")
        certificate = {"signers": as_ranks_u32(signers[valid]), "signatures": signatures[valid]}
        return {
            self._node[r]: {"round": self.round_id, **certificate, **self._statements_for(r, in_s)}
            for r in signers[valid].tolist()
        }

    def collect_unmask(self, replies: dict[int, Any]) -> dict[str, np.ndarray]:
        """Stage 4 -> the decoded sum of the survivors' inputs, or :class:`SecAggAborted`."""
        self._enter("unmask", "done")
        answered = {}
        for node, payload in replies.items():
            advert = self._adverts.get(node)
            if (
                advert is not None
                and advert.rank in self._partners
                and well_formed(payload, "unmask", self.round_id)
            ):
                answered[advert.rank] = payload
        survivors = self._survivors.tolist()
        keys = {a.rank: a.keys for a in self._adverts.values()}
        unmasker = Unmasker(self.session, keys, self._partners)
        try:
            total = unmasker.unmask({r: self._masked[r] for r in survivors}, answered)
            sums = decode_sum(total, self.config, len(survivors))
        except SecAggAborted:
            self._stage = "aborted"
            raise
        self.contributors_ = sorted(self._node[r] for r in survivors)
        return sums

    def _valid_masked(self, rank: int, payload: Any) -> bool:
        if not well_formed(payload, "masked", self.round_id):
            return False
        if word_vector(payload["masked"], self.config.vector_length) is None:
            return False
        partners = rank_array(
            payload["partners"], self.config.num_clients, self.session.graph.degree
        )
        if partners is None or not np.array_equal(partners, self._partners[rank]):
            return False
        mask_pk = self._adverts[self._node[rank]].keys[:32]
        statement = signing.partners_message(self.session.session_id, rank, mask_pk, partners)
        key = self.session.roster.public_keys[rank]
        return signing.verify(key, payload["partners_signature"], statement)

    def _statements_for(self, rank: int, in_s: set[int]) -> dict[str, np.ndarray]:
        owners = [p for p in self._partners[rank].tolist() if p in in_s]
        lists = [self._partners[o] for o in owners]
        return {
            "owners": as_ranks_u32(owners),
            "owner_partner_counts": np.array([x.size for x in lists], dtype=np.uint32),
            "owner_partners": as_ranks_u32(np.concatenate(lists) if lists else []),
            "owner_signatures": np.frombuffer(
                b"".join(self._statements[o] for o in owners), np.uint8
            ).reshape(-1, 64),
        }
