"""Which survivor sets are safe to unmask, checked the same way by merchants and server.

Two rules (docs/secagg.md, "why the server learns one sum"):

* consistency: a survivor set S counts only with valid signatures of at least m_min of
  its members. Honest merchants sign one S per round and 2 m_min > n + C, so no two
  different sets can both be certified: every honest merchant unmasks the same S.
* connectivity (sparse graphs): a survivor's self-mask may be revealed only if, on each
  side of the ring, more of its k/2 neighbours are in S than colluders could be, and it
  masked with every neighbour in S. A server that declares a survivor's neighbours on
  one side dropped, to cut it (or a small group) off the ring, therefore gets nothing.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
from fedseg.privacy.secagg import signing
from fedseg.privacy.secagg.session import SecAggSession

_CERTIFICATES: OrderedDict[tuple, np.ndarray] = OrderedDict()
_VIEWS: OrderedDict[tuple, SurvivorView] = OrderedDict()
_CACHE = 8  # a simulation checks one S and one certificate per round many times


class SurvivorView:
    """A survivor set S with what every check of it needs, computed once.

    Pure functions of public data (graph, S, signed statements), so one view is shared
    by all checks of this process; memoizing them changes no outcome.
    """

    def __init__(self, session: SecAggSession, survivors: np.ndarray) -> None:
        self.session, self.survivors = session, survivors
        self.mask = np.zeros(session.config.num_clients, dtype=bool)
        self.mask[survivors] = True
        self.guard = _guard(session, self.mask)
        self._owners: dict[tuple, str | None] = {}

    def complete(self, rank: int, partners: np.ndarray) -> bool:
        """Every neighbour of ``rank`` in S is one of its (sorted) mask partners."""
        neighbours = self.session.graph.neighbours_of(rank)
        needed = neighbours[self.mask[neighbours]]
        at = np.searchsorted(partners, needed)
        return bool(np.all(at < partners.size) and np.array_equal(partners[at], needed))

    def safe(self, rank: int, partners: np.ndarray) -> bool:
        """Both connectivity rules hold for survivor ``rank``."""
        return bool(self.guard[rank]) and self.complete(rank, partners)

    def owner_fault(
        self, owner: int, mask_pk: bytes, partners: np.ndarray, signature: bytes
    ) -> str | None:
        """Why survivor ``owner``'s self-mask must not be revealed (None if it may): its
        partner statement is not signed, or it is not safe."""
        key = (owner, mask_pk, partners.tobytes(), signature)
        if key not in self._owners:
            statement = signing.partners_message(self.session.session_id, owner, mask_pk, partners)
            if not signing.verify(self.session.roster.public_keys[owner], signature, statement):
                self._owners[key] = "has no valid partner statement"
            elif not self.safe(owner, partners):
                self._owners[key] = "would be cut off from its neighbours"
            else:
                self._owners[key] = None
        return self._owners[key]


def survivor_view(session: SecAggSession, survivors: np.ndarray) -> SurvivorView:
    key = (session.session_id, session.roster.digest, survivors.astype(np.int64).tobytes())
    return _memo(_VIEWS, key, lambda: SurvivorView(session, survivors))


def _guard(session: SecAggSession, mask: np.ndarray) -> np.ndarray:
    """Per rank: more than ``side_corrupt`` members of S among its k/2 neighbours on each
    side of the ring (always true on the complete graph). Sliding sums, O(n)."""
    n, graph = mask.size, session.graph
    if graph.complete:
        return np.ones(n, dtype=bool)
    half, floor = graph.degree // 2, session.config.side_corrupt
    ring = mask[graph.ring].astype(np.int64)
    total = np.concatenate([[0], np.cumsum(np.tile(ring, 3))])
    here = np.arange(n) + n
    clockwise = total[here + half + 1] - total[here + 1]
    counter = total[here] - total[here - half]
    guard = np.empty(n, dtype=bool)
    guard[graph.ring] = (clockwise > floor) & (counter > floor)
    return guard


def unsafe_members(
    session: SecAggSession, survivors: set[int], partners: dict[int, np.ndarray]
) -> list[int]:
    """Members of S the merchants would refuse to unmask (the honest server aborts instead).

    Removing one would not help: it widens the run of dropped ring neighbours that made
    it unsafe, and its neighbour becomes unsafe in turn. Under random dropouts within the
    tolerance this happens with probability <= 2^-20 (``choose_graph``).
    """
    view = SurvivorView(session, np.array(sorted(survivors), dtype=np.int64))
    return [r for r in sorted(survivors) if not view.safe(r, partners[r])]


def _memo(cache: OrderedDict, key: tuple, build):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = build()
    if len(cache) > _CACHE:
        cache.popitem(last=False)
    return value


def valid_signers(
    session: SecAggSession, survivors: np.ndarray, signers: np.ndarray, signatures: np.ndarray
) -> np.ndarray:
    """Bool mask over ``signers``: whose signature on (session, S) verifies.

    Memoized per certificate, since in a simulation every survivor checks the same one.
    """
    message = signing.survivors_message(session.session_id, survivors)
    blob = hashlib.sha256(signers.astype(">u4").tobytes() + signatures.tobytes()).digest()

    def check() -> np.ndarray:
        keys = session.roster.public_keys
        pairs = zip(signers.tolist(), signatures, strict=True)
        valid = np.array([signing.verify(keys[r], s.tobytes(), message) for r, s in pairs], bool)
        valid.flags.writeable = False
        return valid

    return _memo(_CERTIFICATES, (message, session.roster.digest, blob), check)
