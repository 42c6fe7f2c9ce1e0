"""Distributed Gaussian noise under secure aggregation.

Each merchant adds ``noise_share(n, tolerance, collusion)`` of the target noise variance
(see :func:`fedseg.privacy.secagg.params.noise_share`): a sum it helps release holds at
least m_min - floor(γn) honest shares, so it carries the charged sigma however many of the
others drop. Nothing is topped up or charged after the fact.
"""

from __future__ import annotations

import math

from fedseg.privacy.secagg.params import noise_share

__all__ = ["noise_share", "topup_noise_multiplier"]


def topup_noise_multiplier(z: float, *, survivors: int, noise_clients: int) -> float | None:
    """Deprecated: still called by client/secure.py and server/secure.py; delete it once
    they size noise with :func:`noise_share` (no top-ups are needed any more)."""
    if z == 0 or survivors >= noise_clients:
        return None
    z_eff = z * math.sqrt(survivors / noise_clients)
    return 1.0 / math.sqrt(1.0 / z_eff**2 - 1.0 / z**2)
