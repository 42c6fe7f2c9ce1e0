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
_CERTIFICATE_CACHE = 8  # a simulation checks one certificate per round many times


def guard_holds(session: SecAggSession, rank: int, in_survivors: np.ndarray) -> bool:
    """Connectivity rule for one survivor (``in_survivors``: bool mask over ranks)."""
    if session.graph.complete:
        return True
    floor = session.config.side_corrupt
    return all(int(in_survivors[side].sum()) > floor for side in session.graph.sides(rank))


def masked_with_all_survivors(
    session: SecAggSession, rank: int, partners: np.ndarray, in_survivors: np.ndarray
) -> bool:
    """True when every neighbour of ``rank`` in S is one of its (sorted) mask partners."""
    neighbours = session.graph.neighbours_of(rank)
    needed = neighbours[in_survivors[neighbours]]
    return bool(np.isin(needed, partners, assume_unique=True).all())


def unsafe_members(
    session: SecAggSession, survivors: set[int], partners: dict[int, np.ndarray]
) -> list[int]:
    """Members of S the merchants would refuse to unmask (the honest server aborts instead).

    Removing one would not help: it widens the run of dropped ring neighbours that made
    it unsafe, and its neighbour becomes unsafe in turn. Under random dropouts within the
    tolerance this happens with probability <= 2^-20 (``choose_graph``).
    """
    mask = np.zeros(session.config.num_clients, dtype=bool)
    mask[list(survivors)] = True
    return sorted(
        r for r in survivors
        if not (guard_holds(session, r, mask)
                and masked_with_all_survivors(session, r, partners[r], mask))
    )  # fmt: skip


def valid_signers(
    session: SecAggSession, survivors: np.ndarray, signers: np.ndarray, signatures: np.ndarray
) -> np.ndarray:
    """Bool mask over ``signers``: whose signature on (session, S) verifies.

    Memoized per certificate, since in a simulation every survivor checks the same one.
    """
    message = signing.survivors_message(session.session_id, survivors)
    blob = hashlib.sha256(signers.astype(">u4").tobytes() + signatures.tobytes()).digest()
    key = (message, session.roster.digest, blob)
    if key in _CERTIFICATES:
        _CERTIFICATES.move_to_end(key)
        return _CERTIFICATES[key]
    keys = session.roster.public_keys
    valid = np.array(
        [
            signing.verify(keys[int(r)], bytes(sig), message)
            for r, sig in zip(signers, signatures, strict=True)
        ],
        dtype=bool,
    )
    valid.flags.writeable = False
    _CERTIFICATES[key] = valid
    if len(_CERTIFICATES) > _CERTIFICATE_CACHE:
        _CERTIFICATES.popitem(last=False)
    return valid
