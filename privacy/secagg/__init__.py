"""Secure aggregation (Bonawitz et al. 2017 with the sparse graph of SecAgg+, Bell et al. 2020).

The server learns only the sum of the surviving clients' named float arrays. See
docs/secagg.md for the protocol, the threat model and how k and t are chosen.
"""

from fedseg.privacy.secagg.client import SecAggClient
from fedseg.privacy.secagg.config import SecAggConfig
from fedseg.privacy.secagg.errors import (
    EncodingRangeError,
    SecAggAborted,
    SecAggConfigError,
    SecAggError,
    SecAggProtocolError,
)
from fedseg.privacy.secagg.noise import distributed_noise_sigma, surviving_noise_sigma
from fedseg.privacy.secagg.server import SecAggServer
from fedseg.privacy.secagg.simulate import run_secagg_round

__all__ = [
    "EncodingRangeError",
    "SecAggAborted",
    "SecAggClient",
    "SecAggConfig",
    "SecAggConfigError",
    "SecAggError",
    "SecAggProtocolError",
    "SecAggServer",
    "distributed_noise_sigma",
    "run_secagg_round",
    "surviving_noise_sigma",
]
