"""Server-side removal of masks: rebuild survivors' self-mask seeds and dropped partners' keys.

A rebuilt secret is accepted only if it matches what its owner published (the seed's
commitment, the mask public key), so a forged or corrupted share cannot skew the sum
silently: other subsets of shares are tried, then the round aborts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedseg.privacy.secagg import crypto, shamir
from fedseg.privacy.secagg.errors import SecAggAborted
from fedseg.privacy.secagg.masking import self_mask
from fedseg.privacy.secagg.messages import rank_map
from fedseg.privacy.secagg.session import SecAggSession

MAX_SUBSETS = 8  # share subsets tried before declaring a secret unrecoverable

Shares = dict[int, list[tuple[int, np.ndarray]]]


class Unmasker:
    """Turns the survivors' masked inputs and revealed shares into the plain uint64 sum."""

    def __init__(
        self, session: SecAggSession, keys: dict[int, bytes], partners: dict[int, np.ndarray]
    ) -> None:
        self.session, self.keys, self.config = session, keys, session.config
        self.context = session.session_id
        self.partners = {rank: set(p.tolist()) for rank, p in partners.items()}

    def unmask(self, masked: dict[int, np.ndarray], answered: dict[int, Any]) -> np.ndarray:
        """Sum of the survivors' encoded inputs (uint64, mod 2^64)."""
        survivors = set(masked)
        self_shares, key_shares = self._gather(answered, survivors)
        total = np.zeros(self.config.vector_length, dtype=np.uint64)
        for vector in masked.values():
            total += vector
        for owner in sorted(survivors):
            seed = self._rebuild(owner, self_shares.get(owner, []), self._seed_matches)
            total -= self_mask(seed, total.size)
        for dropped in sorted(set(self.partners) - survivors):
            affected = sorted(self.partners[dropped] & survivors)
            if affected:
                secret = self._rebuild(dropped, key_shares.get(dropped, []), self._key_matches)
                total -= self._residual_masks(dropped, secret, affected, total.size)
        return total

    def _gather(self, answered: dict[int, Any], survivors: set[int]) -> tuple[Shares, Shares]:
        """Well-formed shares from merchants that held them (malformed replies are skipped)."""
        self_shares: Shares = {}
        key_shares: Shares = {}
        for responder, payload in sorted(answered.items()):
            held = self.partners[responder]
            revealed_self = rank_map(
                payload["self_mask_shares"], held & survivors, shamir.SHARE_BYTES
            )
            revealed_key = rank_map(payload["key_shares"], held - survivors, shamir.SHARE_BYTES)
            if revealed_self is None or revealed_key is None:
                continue
            point = responder + 1
            for store, revealed in ((self_shares, revealed_self), (key_shares, revealed_key)):
                for owner, blob in revealed.items():
                    row = shamir.share_from_bytes(blob)
                    if row is not None:
                        store.setdefault(owner, []).append((point, row))
        return self_shares, key_shares

    def _rebuild(self, owner: int, shares: list[tuple[int, np.ndarray]], matches) -> bytes:
        t = self.config.threshold
        if len(shares) < t:
            raise SecAggAborted(
                f"only {len(shares)} shares of merchant rank {owner}'s secret arrived, need {t}: "
                "more merchants dropped during unmasking than the dropout tolerance allows"
            )
        for start in range(min(len(shares) - t + 1, MAX_SUBSETS)):
            subset = shares[start : start + t]
            chunks = shamir.reconstruct(
                tuple(p for p, _ in subset), np.stack([r for _, r in subset])
            )
            secret = shamir.chunks_to_secret(chunks)
            if secret is not None and matches(owner, secret):
                return secret
        raise SecAggAborted(f"merchant rank {owner}'s secret does not match its published key")

    def _seed_matches(self, owner: int, seed: bytes) -> bool:
        return crypto.commitment(self.context, owner, seed) == self.keys[owner][64:]

    def _key_matches(self, owner: int, secret: bytes) -> bool:
        return crypto.public_from_private(secret) == self.keys[owner][:32]

    def _residual_masks(
        self, dropped: int, secret: bytes, affected: list[int], size: int
    ) -> np.ndarray:
        """Sum of the signed pair masks survivors applied with a dropped partner."""
        residual = np.zeros(size, dtype=np.uint64)
        private = crypto.X25519PrivateKey.from_private_bytes(secret)
        for survivor in affected:
            low, high = sorted((dropped, survivor))
            info = crypto.pair_info(b"mask", low, high)
            seed = crypto.agree(private, self.keys[survivor][:32], self.context, info)
            mask = crypto.expand_mask(seed, size)
            residual = residual + mask if survivor < dropped else residual - mask
        return residual
