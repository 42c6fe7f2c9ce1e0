"""The sparse masking/sharing graph of SecAgg+ (Bell et al. 2020).

Clients sit on a ring in a pseudo-random order and each is joined to the k/2 nearest
positions on either side (a Harary graph H(k, n)); with k >= n - 1 it is the complete
graph of Bonawitz et al. 2017. The order is derived from a hash of the whole key roster,
so every party computes the same graph and the server cannot pick it without re-keying.
"""

from __future__ import annotations

import hashlib

import numpy as np


def roster_digest(context: bytes, roster: dict[int, tuple[bytes, bytes]]) -> bytes:
    """SHA-256 over the round context and every (node id, mask key, share key), sorted."""
    digest = hashlib.sha256(context)
    for node_id in sorted(roster):
        mask_pk, enc_pk = roster[node_id]
        digest.update(node_id.to_bytes(8, "big") + mask_pk + enc_pk)
    return digest.digest()


class NeighbourGraph:
    """Neighbour sets over the node ids of a roster for degree ``neighbours``."""

    def __init__(self, node_ids: list[int], neighbours: int, digest: bytes) -> None:
        self.node_ids = sorted(node_ids)
        n = len(self.node_ids)
        self.degree = min(neighbours, n - 1)
        seed = np.random.PCG64(int.from_bytes(digest, "big"))  # public randomness only
        order = np.random.Generator(seed).permutation(n)
        self._ring = [self.node_ids[i] for i in order]
        self._position = {node: pos for pos, node in enumerate(self._ring)}
        # Shamir evaluation point of each node: 1 + its rank among the sorted ids.
        self.share_point = {node: rank + 1 for rank, node in enumerate(self.node_ids)}

    def neighbours_of(self, node_id: int) -> list[int]:
        """Sorted neighbour ids of ``node_id``."""
        n = len(self._ring)
        if self.degree >= n - 1:
            return [node for node in self.node_ids if node != node_id]
        pos, half = self._position[node_id], self.degree // 2
        offsets = [*range(1, half + 1), *range(-half, 0)]
        return sorted(self._ring[(pos + off) % n] for off in offsets)
