"""A merchant's two secrets, Shamir-shared and encrypted to each neighbour.

The self-mask seed b and the mask private key are split into shares of threshold t, one
per neighbour, each sent as AES-256-GCM under a key only that neighbour can derive
(HKDF of the X25519 agreement of the two encryption keys; one key per direction), with
the session and both ranks as associated data, so the server can neither read a share
nor move it to another pair or round.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fedseg.privacy.secagg import crypto, shamir
from fedseg.privacy.secagg.messages import SHARE_PLAINTEXT_BYTES, share_associated_data


def encrypted_shares(
    context: bytes,
    rank: int,
    secrets: tuple[bytes, bytes],
    enc_key: X25519PrivateKey,
    peer_enc_keys: dict[int, bytes],
    threshold: int,
) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """({peer: ciphertext to send}, {peer: key to open what that peer sends us})."""
    chunks = np.concatenate([shamir.secret_to_chunks(s) for s in secrets])
    peers = sorted(peer_enc_keys)
    rows = shamir.share(chunks, np.array([p + 1 for p in peers], dtype=np.int64), threshold)
    plaintexts = rows.astype("<u4")  # per row: seed share || key share, 36 bytes each
    ciphertexts, receive_keys = {}, {}
    for plaintext, peer in zip(plaintexts, peers, strict=True):
        shared = crypto.exchange(enc_key, peer_enc_keys[peer])
        send_key, receive_keys[peer] = crypto.directional_keys(shared, context, rank, peer)
        aad = share_associated_data(context, rank, peer)
        ciphertexts[peer] = crypto.encrypt(send_key, plaintext.tobytes(), aad)
    return ciphertexts, receive_keys


def open_share(
    context: bytes, rank: int, peer: int, key: bytes, blob: object
) -> tuple[bytes, bytes] | None:
    """(share of the peer's self-mask seed, share of its mask key), or None if the blob is
    malformed or not authentic (such a share is never revealed)."""
    plaintext = crypto.decrypt(key, blob, share_associated_data(context, peer, rank))
    if plaintext is None or len(plaintext) != SHARE_PLAINTEXT_BYTES:
        return None
    return plaintext[: shamir.SHARE_BYTES], plaintext[shamir.SHARE_BYTES :]
