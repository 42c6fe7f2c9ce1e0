"""Mask expansion shared by clients and the server.

The pairwise mask of clients u < v is ChaCha20(HKDF(X25519(s_u, s_v))) and is added by u,
subtracted by v, so it cancels in the sum; the self mask ChaCha20(b_u) hides u's input
when u's pairwise masks have to be removed because a neighbour dropped.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fedseg.privacy.secagg import crypto


def self_mask(seed: bytes, length: int) -> np.ndarray:
    """Self mask of ``length`` uint64 words from a 32-byte seed."""
    return crypto.expand_mask(seed, length)


def pair_mask(
    private: X25519PrivateKey,
    own_rank: int,
    peer_rank: int,
    peer_public: bytes,
    context: bytes,
    length: int,
) -> np.ndarray:
    """Mask shared by ``own_rank`` and ``peer_rank`` (same for both sides)."""
    low, high = sorted((own_rank, peer_rank))
    seed = crypto.agree(private, peer_public, context, crypto.pair_info(b"mask", low, high))
    return crypto.expand_mask(seed, length)
