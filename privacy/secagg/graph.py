"""The sparse masking/sharing graph of SecAgg+ (Bell et al. 2020) over roster ranks.

Merchants sit on a ring in a pseudo-random order and each is joined to the k/2 nearest
positions on either side (a Harary graph); with k >= n - 1 it is the complete graph of
Bonawitz et al. 2017. The order is SHA-256(session id, rank) sorted, so every party
derives the same graph from public data and numpy's generator versions never matter.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np


class NeighbourGraph:
    """Neighbours of each rank in a roster of ``n`` for degree ``neighbours``."""

    def __init__(self, n: int, neighbours: int, seed: bytes) -> None:
        self.n = n
        self.degree = min(neighbours, n - 1)
        self.complete = self.degree >= n - 1
        keys = [hashlib.sha256(seed + rank.to_bytes(4, "big")).digest() for rank in range(n)]
        self._ring = np.array(sorted(range(n), key=keys.__getitem__), dtype=np.int64)
        self._position = np.empty(n, dtype=np.int64)
        self._position[self._ring] = np.arange(n)
        self._half = np.arange(1, self.degree // 2 + 1, dtype=np.int64)

    @property
    def ring(self) -> np.ndarray:
        """Ranks in ring order (position -> rank); public data every party derives."""
        return self._ring

    def sides(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """(counter-clockwise, clockwise) neighbours of ``rank``, k/2 each (sparse graphs)."""
        here = self._position[rank]
        return self._ring[(here - self._half) % self.n], self._ring[(here + self._half) % self.n]

    def neighbours_of(self, rank: int) -> np.ndarray:
        """Sorted neighbour ranks (int64; do not modify)."""
        if self.complete:
            return np.delete(np.arange(self.n, dtype=np.int64), rank)
        return self._table[rank]

    @cached_property
    def _table(self) -> np.ndarray:
        """(n, k) sorted neighbour ranks of every rank (sparse graphs only)."""
        offsets = np.concatenate([-self._half[::-1], self._half])
        table = np.sort(self._ring[(self._position[:, None] + offsets) % self.n], axis=1)
        table.flags.writeable = False
        return table

    def are_neighbours(self, a: int, b: int) -> bool:
        if a == b:
            return False
        if self.complete:
            return True
        gap = abs(int(self._position[a]) - int(self._position[b]))
        return min(gap, self.n - gap) <= self.degree // 2

    @staticmethod
    def share_point(rank: int) -> int:
        """Shamir evaluation point of a rank: rank + 1 (distinct, never 0)."""
        return rank + 1
