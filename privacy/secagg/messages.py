"""Shapes of the protocol messages, their size limits and the checks that reject bad ones.

Payloads are flat dicts of ints, str, bytes, numpy arrays and ``{rank: bytes}`` maps, so a
transport can carry them (see ``wire.py``). Protocol identities are roster ranks; Flower
node ids only route messages. A reply with an unknown key or any field of the wrong
size is refused whole before anything in it is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedseg.privacy.secagg import shamir
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.crypto import KEY_BYTES, NONCE_BYTES
from fedseg.privacy.secagg.digest import DIGEST_BYTES
from fedseg.privacy.secagg.signing import SIGNATURE_BYTES

KEYS_BYTES = 3 * KEY_BYTES  # mask_pk || enc_pk || self-mask commitment
SHARE_PLAINTEXT_BYTES = 2 * shamir.SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = NONCE_BYTES + SHARE_PLAINTEXT_BYTES + 16
MAX_NODE_ID = 2**64 - 1

# The keys each stage's reply may carry (besides "round"), in the order they are built.
REPLY_KEYS = {
    "advertise": ("merchant", "node_id", "keys", "request_digest", "signature"),
    "share": ("shares",),
    "masked": ("masked", "partners", "partners_signature"),
    "consistency": ("signature",),
    "unmask": ("self_mask_shares", "key_shares"),
}


def max_reply_bytes(stage: str, config: SecAggConfig) -> int:
    """Upper bound on a well-formed reply's payload bytes: refuse larger ones undecoded."""
    k = config.neighbours
    body = {
        "advertise": 255 + 8 + KEYS_BYTES + DIGEST_BYTES + SIGNATURE_BYTES,
        "share": k * (8 + SHARE_CIPHERTEXT_BYTES),
        "masked": 8 * config.vector_length + 4 * k + SIGNATURE_BYTES,
        "consistency": SIGNATURE_BYTES,
        "unmask": 2 * k * (8 + shamir.SHARE_BYTES),
    }[stage]
    return body + 1024  # keys, dtypes, shapes and the round id


def well_formed(payload: Any, stage: str, round_id: int) -> bool:
    """A dict of this round with exactly the stage's keys (no extras)."""
    return (
        isinstance(payload, dict)
        and payload.get("round") == round_id
        and set(payload) == {"round", *REPLY_KEYS[stage]}
    )


def is_node_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NODE_ID


def is_blob(value: Any, size: int) -> bool:
    return isinstance(value, bytes) and len(value) == size


def rank_array(value: Any, n: int, max_size: int) -> np.ndarray | None:
    """A strictly increasing 1-D integer array of ranks in [0, n), as int64; else None."""
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
        return None
    if value.size > max_size:
        return None
    ranks = value.astype(np.int64)
    if ranks.size and (ranks[0] < 0 or ranks[-1] >= n or not (ranks[1:] > ranks[:-1]).all()):
        return None
    return ranks


def byte_rows(value: Any, count: int, width: int) -> np.ndarray | None:
    """A (count, width) uint8 array, else None."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.shape == (count, width):
        return value
    return None


def rank_map(value: Any, allowed: set[int], size: int) -> dict[int, bytes] | None:
    """{rank: bytes of ``size``} with every rank in ``allowed``; else None."""
    if not isinstance(value, dict) or len(value) > len(allowed):
        return None
    if not all(r in allowed and is_blob(b, size) for r, b in value.items()):
        return None
    return {int(r): b for r, b in value.items()}


def word_vector(value: Any, size: int) -> np.ndarray | None:
    if isinstance(value, np.ndarray) and value.dtype == np.uint64 and value.shape == (size,):
        return value
    return None


def share_associated_data(context: bytes, sender: int, receiver: int) -> bytes:
    """AES-GCM associated data binding session, sender and receiver of a share ciphertext."""
    return context + b"/shares/" + sender.to_bytes(4, "big") + receiver.to_bytes(4, "big")


def as_ranks_u32(ranks) -> np.ndarray:
    return np.asarray(ranks, dtype=np.uint32)
