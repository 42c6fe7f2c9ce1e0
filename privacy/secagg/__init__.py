"""Secure aggregation against a malicious server (Bonawitz et al. 2017 with a consistency
round; the sparse graph of SecAgg+, Bell et al. 2020) over a pinned, signed roster.

The server learns only the sum of the inputs of one certified survivor set of at least
m_min merchants. See docs/secagg.md for the protocol, the threat model and the bounds.
"""

from fedseg.privacy.secagg.client import SecAggClient
from fedseg.privacy.secagg.config import SecAggConfig, input_spec
from fedseg.privacy.secagg.digest import request_digest
from fedseg.privacy.secagg.errors import (
    EncodingShapeError,
    SecAggAborted,
    SecAggConfigError,
    SecAggError,
    SecAggProtocolError,
)
from fedseg.privacy.secagg.messages import REPLY_KEYS, max_reply_bytes
from fedseg.privacy.secagg.params import (
    SecAggLimits,
    SecAggParams,
    min_survivors,
    noise_share,
)
from fedseg.privacy.secagg.roster import (
    FederationRoster,
    generate_signing_key,
    load_roster,
    load_signing_key,
    save_roster,
    simulation_roster,
    simulation_signing_key,
)
from fedseg.privacy.secagg.server import SecAggServer
from fedseg.privacy.secagg.session import SecAggSession
from fedseg.privacy.secagg.simulate import RoundOutcome, run_secagg_round

__all__ = [
    "REPLY_KEYS",
    "EncodingShapeError",
    "FederationRoster",
    "RoundOutcome",
    "SecAggAborted",
    "SecAggClient",
    "SecAggConfig",
    "SecAggConfigError",
    "SecAggError",
    "SecAggLimits",
    "SecAggParams",
    "SecAggProtocolError",
    "SecAggServer",
    "SecAggSession",
    "generate_signing_key",
    "input_spec",
    "load_roster",
    "load_signing_key",
    "max_reply_bytes",
    "min_survivors",
    "noise_share",
    "request_digest",
    "run_secagg_round",
    "save_roster",
    "simulation_roster",
    "simulation_signing_key",
]
