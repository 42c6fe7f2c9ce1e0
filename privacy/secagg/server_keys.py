"""The server's handling of key advertisements: accept only pinned-roster merchants.

An honest server checks what every merchant will check (signature under the pinned key,
this round's request digest, one entry per merchant, no repeated round key), so one
misbehaving merchant cannot make the others abort; it forwards to each merchant only
its graph neighbours' entries.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from fedseg.privacy.secagg import signing
from fedseg.privacy.secagg.messages import KEYS_BYTES, is_blob, is_node_id, well_formed
from fedseg.privacy.secagg.session import SecAggSession


@dataclass(frozen=True)
class Advert:
    rank: int
    node_id: int
    keys: bytes  # mask_pk || enc_pk || commitment
    signature: bytes


def accepted_adverts(session: SecAggSession, replies: dict[int, Any]) -> dict[int, Advert]:
    """{node_id: advert} of the replies that are valid; duplicates of a merchant or of a
    round key drop every copy."""
    found: dict[int, Advert] = {}
    for node, payload in replies.items():
        advert = _parse(session, node, payload)
        if advert is not None:
            found[node] = advert
    ranks = Counter(a.rank for a in found.values())
    keys = Counter(k for a in found.values() for k in (a.keys[:32], a.keys[32:64]))
    return {
        node: a for node, a in found.items()
        if ranks[a.rank] == 1 and keys[a.keys[:32]] == keys[a.keys[32:64]] == 1
    }  # fmt: skip


def _parse(session: SecAggSession, node: int, payload: Any) -> Advert | None:
    if not is_node_id(node) or not well_formed(payload, "advertise", session.round_id):
        return None
    merchant, keys, signature = payload["merchant"], payload["keys"], payload["signature"]
    named = isinstance(merchant, str) and len(merchant) <= 255
    rank = session.roster.rank(merchant) if named else None
    if rank is None or payload["node_id"] != node or not is_blob(keys, KEYS_BYTES):
        return None
    # A merchant that signed another request digest fails here: the digest is signed.
    statement = signing.advert_message(
        session.session_id, rank, node, merchant, keys, session.request_digest
    )
    if not signing.verify(session.roster.public_keys[rank], signature, statement):
        return None
    return Advert(rank, node, keys, signature)


def advert_lists(
    session: SecAggSession, adverts: dict[int, Advert], node_of: dict[int, int]
) -> dict[int, dict[str, Any]]:
    """Per merchant: its neighbours' entries as arrays (ranks, node ids, keys, digests,
    signatures)."""
    by_rank = {a.rank: a for a in adverts.values()}
    digest = np.frombuffer(session.request_digest, np.uint8)
    messages = {}
    for rank, node in node_of.items():
        peers = [int(r) for r in session.graph.neighbours_of(rank) if int(r) in by_rank]
        entries = [by_rank[p] for p in peers]
        messages[node] = {
            "round": session.round_id,
            "ranks": np.array(peers, dtype=np.uint32),
            "node_ids": np.array([e.node_id for e in entries], dtype=np.uint64),
            "keys": _rows([e.keys for e in entries], KEYS_BYTES),
            "digests": np.tile(digest, (len(entries), 1)),
            "signatures": _rows([e.signature for e in entries], signing.SIGNATURE_BYTES),
        }
    return messages


def _rows(blobs: list[bytes], width: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), width).copy()
