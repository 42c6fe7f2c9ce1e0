"""Arithmetic of distributed Gaussian noise under secure aggregation.

Each of n clients adds N(0, sigma_client^2) to its statistic; the sum of s independent
shares is N(0, s * sigma_client^2). Clients draw the noise with their own generator; this
module only says how large each share must be and what the sum actually carries.
"""

from __future__ import annotations

import math


def distributed_noise_sigma(*, sigma_total: float, n_expected_clients: int) -> float:
    """Per-client sigma so that the sum of ``n_expected_clients`` shares has ``sigma_total``.

    Pass the smallest number of contributors you plan for (e.g. the expected survivors
    after dropout) to keep the target even when some clients drop.
    """
    _check(sigma_total=sigma_total, n=n_expected_clients)
    return sigma_total / math.sqrt(n_expected_clients)


def surviving_noise_sigma(
    *, sigma_total: float, n_expected_clients: int, n_contributors: int
) -> float:
    """Sigma the released sum carries when only ``n_contributors`` shares are in it.

    Equals sigma_total * sqrt(s / n): below target when s < n, so the caller must charge
    the privacy loss of this smaller sigma (or top the noise up).
    """
    _check(sigma_total=sigma_total, n=n_expected_clients)
    if not 0 <= n_contributors:
        raise ValueError(f"n_contributors must be >= 0, got {n_contributors}")
    per_client = distributed_noise_sigma(
        sigma_total=sigma_total, n_expected_clients=n_expected_clients
    )
    return per_client * math.sqrt(n_contributors)


def _check(*, sigma_total: float, n: int) -> None:
    if not (math.isfinite(sigma_total) and sigma_total >= 0):
        raise ValueError(f"sigma_total must be finite and >= 0, got {sigma_total}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_expected_clients must be an int >= 1, got {n}")


def topup_noise_multiplier(z: float, *, survivors: int, noise_clients: int) -> float | None:
    """Noise multiplier of the extra release that makes up for missing noise shares.

    ``survivors`` shares of variance σ²/noise_clients sum to σ²·s/m, i.e. multiplier
    z_eff = z·√(s/m). Gaussian precisions add under composition, so charging one more
    Gaussian with 1/z_top² = 1/z_eff² − 1/z² accounts for exactly z_eff. None if no
    top-up is needed (no noise at all, or every planned share arrived).
    """
    if z == 0 or survivors >= noise_clients:
        return None
    z_eff = z * math.sqrt(survivors / noise_clients)
    return 1.0 / math.sqrt(1.0 / z_eff**2 - 1.0 / z**2)
