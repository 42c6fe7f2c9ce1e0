"""The sparse masking/sharing graph of SecAgg+ (Bell et al. 2020).

Clients sit on a ring in a pseudo-random order and each is joined to the k/2 nearest
positions on either side (a Harary graph H(k, n)); with k >= n - 1 it is the complete
graph of Bonawitz et al. 2017. The order is derived from a hash of the whole key roster,
so every party computes the same graph and the server cannot pick it without re-keying.
"""

from __future__ import annotations

import hashlib

import numpy as np


def roster_digest(context: bytes, node_ids: np.ndarray, public_keys: np.ndarray) -> bytes:
    """SHA-256 over the round context, the sorted node ids and their public-key rows."""
    ids = np.ascontiguousarray(node_ids, dtype=">u8").tobytes()
    return hashlib.sha256(context + ids + np.ascontiguousarray(public_keys).tobytes()).digest()


class NeighbourGraph:
    """Neighbour sets over the sorted node ids of a roster for degree ``neighbours``."""

    def __init__(self, node_ids: np.ndarray, neighbours: int, digest: bytes) -> None:
        self.node_ids = np.asarray(node_ids, dtype=np.uint64)
        n = self.node_ids.size
        self.degree = min(neighbours, n - 1)
        seed = np.random.PCG64(int.from_bytes(digest, "big"))  # public randomness only
        self._ring = np.random.Generator(seed).permutation(n)  # ring position -> rank
        self._position = np.empty(n, dtype=np.int64)
        self._position[self._ring] = np.arange(n)
        half = self.degree // 2
        self._offsets = np.array([*range(1, half + 1), *range(-half, 0)], dtype=np.int64)

    def rank(self, node_id: int) -> int:
        """Index of ``node_id`` in the sorted roster."""
        return int(np.searchsorted(self.node_ids, np.uint64(node_id)))

    def share_point(self, node_id: int) -> int:
        """Shamir evaluation point of a node: 1 + its rank (distinct, never 0)."""
        return self.rank(node_id) + 1

    def neighbours_of(self, node_id: int) -> list[int]:
        """Sorted neighbour ids of ``node_id``."""
        n, rank = self.node_ids.size, self.rank(node_id)
        if self.degree >= n - 1:
            ranks = np.delete(np.arange(n), rank)
        else:
            ranks = np.sort(self._ring[(self._position[rank] + self._offsets) % n])
        return [int(node) for node in self.node_ids[ranks]]
