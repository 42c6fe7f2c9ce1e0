"""One round's public context, derived identically by every merchant and the server.

The session id hashes the protocol version, round id, pinned roster, derived config and
request digest. It salts every key derivation, seeds the graph and opens every signed
statement, so a merchant that received a different request, roster or parameters cannot
interoperate with the others by accident or by a server's design.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.digest import DIGEST_BYTES
from fedseg.privacy.secagg.errors import SecAggConfigError
from fedseg.privacy.secagg.graph import NeighbourGraph
from fedseg.privacy.secagg.params import SecAggParams
from fedseg.privacy.secagg.roster import FederationRoster

PROTOCOL_VERSION = b"fedseg-secagg/v2"
MAX_ROUND_ID = 2**63 - 1


@dataclass(frozen=True, eq=False)
class SecAggSession:
    roster: FederationRoster
    config: SecAggConfig
    round_id: int
    request_digest: bytes

    def __post_init__(self) -> None:
        if isinstance(self.round_id, bool) or not isinstance(self.round_id, int):
            raise SecAggConfigError("round_id must be an int")
        if not 0 <= self.round_id <= MAX_ROUND_ID:
            raise SecAggConfigError(f"round_id must be in [0, 2^63), got {self.round_id}")
        if not isinstance(self.request_digest, bytes) or len(self.request_digest) != DIGEST_BYTES:
            raise SecAggConfigError("request_digest must be 32 bytes (see request_digest())")
        if self.config.num_clients != len(self.roster):
            raise SecAggConfigError("config.num_clients must equal the pinned roster's size")

    @classmethod
    def create(
        cls,
        *,
        roster: FederationRoster,
        params: SecAggParams,
        round_id: int,
        request_digest: bytes,
        vector_spec,
        max_abs_value: float,
    ) -> SecAggSession:
        """Derive the round's config from n = len(roster): never from a server-sent n, k or t."""
        config = SecAggConfig.derive(
            num_clients=len(roster), params=params, vector_spec=vector_spec,
            max_abs_value=max_abs_value,
        )  # fmt: skip
        return cls(roster, config, round_id, request_digest)

    @cached_property
    def session_id(self) -> bytes:
        h = hashlib.sha256(PROTOCOL_VERSION + self.round_id.to_bytes(8, "big"))
        h.update(self.roster.digest + self.config.digest + self.request_digest)
        return h.digest()

    @cached_property
    def graph(self) -> NeighbourGraph:
        seed = hashlib.sha256(b"graph\0" + self.session_id).digest()
        return NeighbourGraph(self.config.num_clients, self.config.neighbours, seed)
