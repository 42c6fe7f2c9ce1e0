"""Server half of the federated recommender: FedAvg over summed client parameters."""

from __future__ import annotations

import numpy as np


def fedavg(summed: dict[str, np.ndarray], *, n_clients: int) -> dict[str, np.ndarray]:
    """Uniform average of the clients' parameters from their sum.

    Uniform (not weighted by customer counts) so the server never needs a
    merchant's exact size; the sum may come from secure aggregation.
    """
    if n_clients < 1:
        raise ValueError(f"n_clients must be >= 1, got {n_clients}")
    averaged = {}
    for name, total in summed.items():
        array = np.asarray(total, dtype=np.float64)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"summed parameter {name!r} contains NaN or inf")
        averaged[name] = (array / n_clients).astype(np.float32)
    return averaged
