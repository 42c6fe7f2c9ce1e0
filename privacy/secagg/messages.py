"""Shapes of the protocol messages and the checks that reject malformed ones.

Every payload is a plain dict of ints, str, bytes and numpy arrays so a Flower adapter
can carry it. Node ids are unsigned 64-bit integers (as Flower's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedseg.privacy.secagg import shamir
from fedseg.privacy.secagg.crypto import KEY_BYTES, NONCE_BYTES

# nonce || AES-GCM(self-mask share || mask-key share) || 16-byte tag
SHARE_PLAINTEXT_BYTES = 2 * shamir.SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = NONCE_BYTES + SHARE_PLAINTEXT_BYTES + 16
MAX_NODE_ID = 2**64 - 1
ROSTER_ROW_BYTES = 3 * KEY_BYTES


def is_node_id(value: Any) -> bool:
    """True for an int (not bool) usable as a 64-bit node id."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NODE_ID


def is_blob(value: Any, size: int) -> bool:
    """True for bytes of exactly ``size``."""
    return isinstance(value, bytes | bytearray) and len(value) == size


def has_round(payload: Any, round_id: int) -> bool:
    """True when ``payload`` is a dict tagged with this round."""
    return isinstance(payload, dict) and payload.get("round") == round_id


def parse_key_entry(entry: Any) -> tuple[bytes, bytes, bytes] | None:
    """(mask_pk, enc_pk, self_mask_commitment) from a key advertisement, or ``None``."""
    if not isinstance(entry, dict):
        return None
    fields = (entry.get("mask_pk"), entry.get("enc_pk"), entry.get("self_mask_commitment"))
    if not all(is_blob(field, KEY_BYTES) for field in fields):
        return None
    return bytes(fields[0]), bytes(fields[1]), bytes(fields[2])


def key_entry(mask_pk: bytes, enc_pk: bytes, commitment: bytes) -> dict[str, bytes]:
    """The public part of a client's key advertisement."""
    return {"mask_pk": mask_pk, "enc_pk": enc_pk, "self_mask_commitment": commitment}


def share_associated_data(context: bytes, sender: int, receiver: int) -> bytes:
    """AES-GCM associated data binding round, sender and receiver of a share ciphertext."""
    return context + b"/shares/" + sender.to_bytes(8, "big") + receiver.to_bytes(8, "big")


def sorted_ids(value: Any) -> np.ndarray | None:
    """A strictly increasing uint64 array of node ids, or ``None``."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint64 or value.ndim != 1:
        return None
    return value if bool(np.all(value[1:] > value[:-1])) else None


def parse_roster(payload: Any, round_id: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted node ids, public-key rows (n, 96)) of a roster broadcast, or ``None``.

    Each row is mask_pk || enc_pk || self_mask_commitment; no public key may repeat.
    """
    if not has_round(payload, round_id):
        return None
    ids, keys = sorted_ids(payload.get("node_ids")), payload.get("public_keys")
    shape = None if ids is None else (ids.size, ROSTER_ROW_BYTES)
    if not isinstance(keys, np.ndarray) or keys.dtype != np.uint8 or keys.shape != shape:
        return None
    public = np.ascontiguousarray(keys[:, : 2 * KEY_BYTES]).reshape(-1, KEY_BYTES)
    if np.unique(public.view(f"V{KEY_BYTES}")).size != public.shape[0]:
        return None
    return ids, keys


def roster_message(round_id: int, entries: dict[int, tuple[bytes, bytes, bytes]]) -> dict:
    """Roster broadcast: sorted uint64 ``node_ids`` and uint8 ``public_keys`` rows."""
    order = sorted(entries)
    rows = b"".join(b"".join(entries[node]) for node in order)
    keys = np.frombuffer(rows, dtype=np.uint8).reshape(len(order), ROSTER_ROW_BYTES)
    return {"round": round_id, "node_ids": np.array(order, dtype=np.uint64), "public_keys": keys}
