"""The three statements a merchant signs per round, and their verification.

* advertisement: its round keys, self-mask commitment, node id and request digest;
* partner statement: the neighbours it masked with (sent with its masked input);
* survivor statement: the survivor set S of the consistency round.

Each is framed with a label and the session id (protocol version, round, pinned roster,
parameters, request digest), so no signature can be replayed in another role or round.

Verification results are memoized (bounded LRU) in this process: verifying is a pure
function of (key, signature, message), and in a simulation every advertisement and
survivor signature is checked by many clients of one process (Bitcoin Core keeps the same
kind of signature cache). A deployed merchant verifies everything it needs itself.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_BYTES = 64


def _frame(label: bytes, session_id: bytes, *parts: bytes) -> bytes:
    body = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    return b"fedseg-secagg/" + label + b"\0" + session_id + body


def advert_message(
    session_id: bytes,
    rank: int,
    node_id: int,
    merchant: str,
    keys: bytes,
    request_digest: bytes,
) -> bytes:
    """``keys`` is mask_pk || enc_pk || self-mask commitment (96 bytes)."""
    return _frame(
        b"advert", session_id, rank.to_bytes(4, "big"), node_id.to_bytes(8, "big"),
        merchant.encode(), keys, request_digest,
    )  # fmt: skip


def partners_message(session_id: bytes, rank: int, mask_pk: bytes, partners: np.ndarray) -> bytes:
    """Bound to the merchant's round mask key as well, so it is new in every round."""
    ranks = np.ascontiguousarray(partners, dtype=">u4").tobytes()
    return _frame(b"partners", session_id, rank.to_bytes(4, "big"), mask_pk, ranks)


def survivors_message(session_id: bytes, survivors: np.ndarray) -> bytes:
    ranks = np.ascontiguousarray(survivors, dtype=">u4").tobytes()
    return _frame(b"survivors", session_id, hashlib.sha256(ranks).digest())


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` under the key."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        return False
    return _verify(bytes(public_key), signature, bytes(message))


@lru_cache(maxsize=1 << 16)
def _verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
