"""What a merchant verifies before it uses anything the server forwards.

Each check raises :class:`SecAggProtocolError` naming the rule that failed, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fedseg.privacy.secagg import signing
from fedseg.privacy.secagg.digest import DIGEST_BYTES
from fedseg.privacy.secagg.errors import SecAggProtocolError
from fedseg.privacy.secagg.messages import KEYS_BYTES, byte_rows, rank_array
from fedseg.privacy.secagg.session import SecAggSession
from fedseg.privacy.secagg.signing import SIGNATURE_BYTES
from fedseg.privacy.secagg.survivors import survivor_view, valid_signers


@dataclass(frozen=True)
class PeerKeys:
    mask_pk: bytes
    enc_pk: bytes
    commitment: bytes


def verified_neighbours(
    session: SecAggSession, rank: int, node_id: int, own_keys: bytes, message: dict[str, Any]
) -> dict[int, PeerKeys]:
    """The neighbours' signed advertisements the server forwarded, all checked.

    Every entry must be a graph neighbour of ours (no id outside the pinned roster can
    even be expressed), appear once, carry our own request digest and a valid signature
    under that merchant's pinned key; node ids and round keys must not repeat.
    """
    graph, n = session.graph, session.config.num_clients
    ranks = rank_array(message.get("ranks"), n, graph.degree)
    m = -1 if ranks is None else ranks.size
    node_ids, keys = message.get("node_ids"), byte_rows(message.get("keys"), m, KEYS_BYTES)
    digests = byte_rows(message.get("digests"), m, DIGEST_BYTES)
    signatures = byte_rows(message.get("signatures"), m, SIGNATURE_BYTES)
    if (
        ranks is None
        or keys is None
        or digests is None
        or signatures is None
        or not (
            isinstance(node_ids, np.ndarray)
            and node_ids.dtype == np.uint64
            and node_ids.shape == (m,)
        )
    ):
        raise SecAggProtocolError(f"merchant rank {rank}: malformed advertisement list")
    if np.any(digests != np.frombuffer(session.request_digest, np.uint8)):
        raise SecAggProtocolError(
            f"merchant rank {rank}: a neighbour signed a different request digest "
            "(the server sent merchants different requests)"
        )
    if not all(graph.are_neighbours(rank, int(r)) for r in ranks):
        raise SecAggProtocolError(f"merchant rank {rank}: an advertisement is not from a neighbour")
    if np.unique(node_ids).size != m or np.any(node_ids == np.uint64(node_id)):
        raise SecAggProtocolError(f"merchant rank {rank}: node ids repeat in the advertisements")
    peers: dict[int, PeerKeys] = {}
    for i, peer in enumerate(int(r) for r in ranks):
        row = keys[i].tobytes()
        statement = signing.advert_message(
            session.session_id, peer, int(node_ids[i]), session.roster.names[peer], row,
            session.request_digest,
        )  # fmt: skip
        if not signing.verify(session.roster.public_keys[peer], signatures[i].tobytes(), statement):
            raise SecAggProtocolError(
                f"merchant rank {rank}: advertisement of rank {peer} is not signed by the "
                "pinned roster key of that merchant"
            )
        peers[peer] = PeerKeys(row[:32], row[32:64], row[64:])
    public = [own_keys[:32], own_keys[32:64]] + [
        k for p in peers.values() for k in (p.mask_pk, p.enc_pk)
    ]
    if len(set(public)) != len(public):
        raise SecAggProtocolError(f"merchant rank {rank}: round public keys repeat")
    return peers


def check_survivor_set(
    session: SecAggSession, rank: int, partners: np.ndarray, message: dict[str, Any]
) -> np.ndarray:
    """The survivor set S to sign: roster ranks, containing us, at least m_min, and safe for us."""
    config = session.config
    survivors = rank_array(message.get("survivors"), config.num_clients, config.num_clients)
    at = 0 if survivors is None else int(np.searchsorted(survivors, rank))
    if survivors is None or at == survivors.size or survivors[at] != rank:
        raise SecAggProtocolError(f"merchant rank {rank}: malformed survivor set")
    if survivors.size < config.min_survivors:
        raise SecAggProtocolError(
            f"merchant rank {rank}: survivor set has {survivors.size} merchants, fewer than "
            f"m_min = {config.min_survivors} (n = {config.num_clients}, dropout tolerance "
            f"{config.dropout_tolerance})"
        )
    if not survivor_view(session, survivors).safe(rank, partners):
        raise SecAggProtocolError(
            f"merchant rank {rank}: the survivor set leaves this merchant cut off from its "
            "neighbours (it masked with a neighbour outside S, or one ring side has too few in S)"
        )
    return survivors


def check_certificate(
    session: SecAggSession, rank: int, survivors: np.ndarray, message: dict[str, Any]
) -> None:
    """At least m_min members of S (us included) signed exactly this S (consistency round)."""
    signers = rank_array(message.get("signers"), session.config.num_clients, survivors.size)
    count = -1 if signers is None else signers.size
    signatures = byte_rows(message.get("signatures"), count, SIGNATURE_BYTES)
    if signers is None or signatures is None or not np.isin(signers, survivors).all():
        raise SecAggProtocolError(f"merchant rank {rank}: malformed survivor signatures")
    valid = valid_signers(session, survivors, signers, signatures)
    others = int((valid & (signers != rank)).sum())
    if others + 1 < session.config.min_survivors:
        raise SecAggProtocolError(
            f"merchant rank {rank}: only {others + 1} valid signatures on the survivor set, "
            f"need m_min = {session.config.min_survivors} (consistency round)"
        )


def check_owner_statements(
    session: SecAggSession,
    rank: int,
    survivors: np.ndarray,
    owners: dict[int, bytes],
    message: dict,
) -> None:
    """Each survivor whose self-mask share we would reveal (``owners``: rank -> its round
    mask key) masked with all its neighbours in S (signed partner statement) and keeps
    enough of them on each ring side."""
    n = session.config.num_clients
    listed = rank_array(message.get("owners"), n, n)
    counts, flat = message.get("owner_partner_counts"), message.get("owner_partners")
    signatures = byte_rows(
        message.get("owner_signatures"), -1 if listed is None else listed.size, SIGNATURE_BYTES
    )
    if listed is None or signatures is None or not _counts_fit(counts, flat, listed.size):
        raise SecAggProtocolError(f"merchant rank {rank}: malformed partner statements")
    if not np.isin(list(owners), listed).all():
        raise SecAggProtocolError(
            f"merchant rank {rank}: a survivor's partner statement is missing"
        )
    view, bounds = survivor_view(session, survivors), np.concatenate([[0], np.cumsum(counts)])
    for i, owner in enumerate(listed.tolist()):
        if owner not in owners:
            continue
        partners = rank_array(flat[int(bounds[i]) : int(bounds[i + 1])], n, session.graph.degree)
        fault = "has no valid partner statement" if partners is None else view.owner_fault(
            owner, owners[owner], partners, signatures[i].tobytes()
        )  # fmt: skip
        if fault is not None:
            raise SecAggProtocolError(f"merchant rank {rank}: survivor rank {owner} {fault}")


def _counts_fit(counts: Any, flat: Any, size: int) -> bool:
    return (
        isinstance(counts, np.ndarray) and counts.dtype.kind in "iu" and counts.shape == (size,)
        and isinstance(flat, np.ndarray) and flat.ndim == 1 and int(counts.sum()) == flat.size
    )  # fmt: skip
