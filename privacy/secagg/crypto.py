"""Cryptographic building blocks from ``cryptography``: X25519, HKDF-SHA256, AES-GCM, ChaCha20.

Every derived key is bound to the session id (HKDF salt) and to its purpose and ordered
pair of ranks (HKDF info), so mask seeds and share-encryption keys never coincide and never
repeat across rounds.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
_ZERO_NONCE = bytes(16)


def new_key_pair() -> tuple[X25519PrivateKey, bytes]:
    """Fresh X25519 private key (OS entropy) and its raw 32-byte public key."""
    private = X25519PrivateKey.generate()
    return private, private.public_key().public_bytes_raw()


def private_bytes(private: X25519PrivateKey) -> bytes:
    """Raw 32 bytes of an X25519 private key (the secret that gets Shamir-shared)."""
    return private.private_bytes_raw()


def exchange(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """Raw X25519 shared secret with ``peer_public`` (never used directly as a key)."""
    return private.exchange(_public_key(peer_public))


@lru_cache(maxsize=1 << 15)
def _public_key(raw: bytes) -> X25519PublicKey:
    # Parsed once per process: a public key is used by each of its owner's k neighbours.
    return X25519PublicKey.from_public_bytes(raw)


def derive(shared: bytes, context: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 key material from a shared secret, bound to the round context and a purpose."""
    return HKDF(hashes.SHA256(), length, salt=context, info=info).derive(shared)


def directional_keys(shared: bytes, context: bytes, own: int, peer: int) -> tuple[bytes, bytes]:
    """(key for own -> peer, key for peer -> own): two halves of one 64-byte HKDF output."""
    low, high = sorted((own, peer))
    material = derive(shared, context, pair_info(b"enc", low, high), 2 * KEY_BYTES)
    upward, downward = material[:KEY_BYTES], material[KEY_BYTES:]
    return (upward, downward) if own == low else (downward, upward)


def agree(private: X25519PrivateKey, peer_public: bytes, context: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 of the X25519 shared secret with ``peer_public``, bound to context/info."""
    return derive(exchange(private, peer_public), context, info)


def public_from_private(secret: bytes) -> bytes | None:
    """Public key of a reconstructed private key, or ``None`` if it is not a valid key."""
    try:
        return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    except ValueError:
        return None


def agree_from_private(secret: bytes, peer_public: bytes, context: bytes, info: bytes) -> bytes:
    """As :func:`agree`, from raw private-key bytes (server side, for dropped clients)."""
    return agree(X25519PrivateKey.from_private_bytes(secret), peer_public, context, info)


def encrypt(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-256-GCM with a random nonce; output is nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def decrypt(key: bytes, blob: bytes, associated: bytes) -> bytes | None:
    """Inverse of :func:`encrypt`; ``None`` if the blob is malformed or not authentic."""
    if not isinstance(blob, bytes | bytearray) or len(blob) < NONCE_BYTES + 16:
        return None
    try:
        return AESGCM(key).decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), associated)
    except InvalidTag:
        return None


def expand_mask(seed: bytes, length: int) -> np.ndarray:
    """``length`` uniform uint64 words from a 256-bit seed (ChaCha20 keystream, zero nonce).

    Each seed is used for exactly one mask, so the fixed nonce never repeats under a key.
    """
    stream = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    return np.frombuffer(stream.update(bytes(8 * length)), dtype="<u8").astype(np.uint64)


def commitment(context: bytes, rank: int, secret: bytes) -> bytes:
    """SHA-256 commitment to a client's self-mask seed, checked after reconstruction."""
    return hashlib.sha256(context + b"/self-mask/" + rank.to_bytes(4, "big") + secret).digest()


def pair_info(purpose: bytes, low: int, high: int) -> bytes:
    """HKDF info naming the purpose and the ordered pair of ranks."""
    return purpose + b"/" + low.to_bytes(4, "big") + high.to_bytes(4, "big")


def public_of(private: X25519PrivateKey) -> bytes:
    """Raw public key of ``private``."""
    return private.public_key().public_bytes_raw()
