"""Server-side removal of masks: rebuild survivors' self-mask seeds and dropped clients' keys.

A rebuilt secret is accepted only if it matches what its owner published (the seed's
commitment, the mask public key), so a forged or corrupted share cannot skew the sum
silently: the round aborts instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedseg.privacy.secagg import crypto, shamir
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.errors import SecAggAborted
from fedseg.privacy.secagg.graph import NeighbourGraph
from fedseg.privacy.secagg.masking import self_mask

MAX_SUBSETS = 8  # share subsets tried before declaring a secret unrecoverable

Shares = dict[int, list[tuple[int, np.ndarray]]]


class Unmasker:
    """Turns the survivors' masked inputs and revealed shares into the plain uint64 sum."""

    def __init__(
        self,
        context: bytes,
        graph: NeighbourGraph,
        keys: dict[int, tuple[bytes, bytes, bytes]],
        partners: dict[int, list[int]],
        config: SecAggConfig,
    ) -> None:
        self.context, self.graph, self.keys, self.config = context, graph, keys, config
        self.partners = {node: set(peers) for node, peers in partners.items()}

    def unmask(self, masked: dict[int, np.ndarray], answered: dict[int, Any]) -> np.ndarray:
        """Sum of the survivors' encoded inputs (uint64, mod 2^64)."""
        self_shares, key_shares = self._gather(answered, set(masked))
        total = np.zeros(self.config.vector_length, dtype=np.uint64)
        for vector in masked.values():
            total += vector
        for owner in sorted(masked):
            seed = self._rebuild(owner, self_shares.get(owner, []), self._seed_matches)
            total -= self_mask(seed, total.size)
        for dropped in sorted(set(self.partners) - set(masked)):
            affected = [j for j in self.graph.neighbours_of(dropped) if j in masked]
            if affected:
                secret = self._rebuild(dropped, key_shares.get(dropped, []), self._key_matches)
                total -= self._residual_masks(dropped, secret, affected, total.size)
        return total

    def _gather(self, answered: dict[int, Any], survivors: set[int]) -> tuple[Shares, Shares]:
        """Well-formed shares from clients that held them; a client naming one owner in
        both lists breaks the protocol and both of its shares of that owner are ignored."""
        self_shares: Shares = {}
        key_shares: Shares = {}
        for responder, payload in sorted(answered.items()):
            revealed_self = payload.get("self_mask_shares")
            revealed_key = payload.get("key_shares")
            if not isinstance(revealed_self, dict) or not isinstance(revealed_key, dict):
                continue
            point, held = self.graph.share_point(responder), self.partners[responder]
            both = set(revealed_self) & set(revealed_key)
            for owner, blob in revealed_self.items():
                if owner in survivors and owner in held and owner not in both:
                    _add(self_shares, owner, point, blob)
            for owner, blob in revealed_key.items():
                if owner not in survivors and owner in held and owner not in both:
                    _add(key_shares, owner, point, blob)
        return self_shares, key_shares

    def _rebuild(self, owner: int, shares: list[tuple[int, np.ndarray]], matches) -> bytes:
        t = self.config.threshold
        if len(shares) < t:
            raise SecAggAborted(f"only {len(shares)} shares of client {owner}'s secret, need {t}")
        for start in range(min(len(shares) - t + 1, MAX_SUBSETS)):
            subset = shares[start : start + t]
            chunks = shamir.reconstruct(
                tuple(p for p, _ in subset), np.stack([r for _, r in subset])
            )
            secret = shamir.chunks_to_secret(chunks)
            if secret is not None and matches(owner, secret):
                return secret
        raise SecAggAborted(f"client {owner}'s secret does not match its published key")

    def _seed_matches(self, owner: int, seed: bytes) -> bool:
        return crypto.commitment(self.context, owner, seed) == self.keys[owner][2]

    def _key_matches(self, owner: int, secret: bytes) -> bool:
        return crypto.public_from_private(secret) == self.keys[owner][0]

    def _residual_masks(self, dropped: int, secret: bytes, affected: list[int], size: int):
        """Sum of the signed pair masks survivors applied with a dropped neighbour."""
        residual = np.zeros(size, dtype=np.uint64)
        for survivor in affected:
            low, high = sorted((dropped, survivor))
            info = crypto.pair_info(b"mask", low, high)
            seed = crypto.agree_from_private(secret, self.keys[survivor][0], self.context, info)
            mask = crypto.expand_mask(seed, size)
            residual = residual + mask if survivor < dropped else residual - mask
        return residual


def _add(shares: Shares, owner: int, point: int, blob: Any) -> None:
    row = shamir.share_from_bytes(blob)
    if row is not None:
        shares.setdefault(owner, []).append((point, row))
