"""Round parameters (proposed by the server) and a merchant's own limits on them.

n is always the size of the pinned roster. From n, the dropout tolerance δ and the
collusion bound γ everything else follows: at most D = floor(δn) merchants may drop, at
most C = floor(γn) may collude with the server, and a merchant unmasks only if at least
m_min = n - D merchants survived (see docs/secagg.md for why this fixes the noise share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from fedseg.privacy.secagg.errors import SecAggConfigError

DEFAULT_DROPOUT_TOLERANCE = 0.3
DEFAULT_MAX_DROPOUT_TOLERANCE = 0.45


def _count(rate: float, n: int) -> int:
    # Exact decimal arithmetic: 0.3 * 20 must be 6 on every machine, not 6.000000000000001.
    return math.floor(Fraction(repr(float(rate))) * n)


def max_dropouts(n: int, tolerance: float) -> int:
    return _count(tolerance, n)


def max_colluders(n: int, collusion: float) -> int:
    return _count(collusion, n)


def min_survivors(n: int, tolerance: float) -> int:
    """m_min = ceil(n (1 - tolerance)): the fewest survivors a merchant unmasks for."""
    return n - max_dropouts(n, tolerance)


def noise_share(n: int, tolerance: float, collusion: float) -> float:
    """Fraction of the target noise variance each merchant adds under distributed noise.

    A merchant accepts only survivor sets of at least m_min members, of which at most
    floor(γn) collude with the server, so at least m_min - floor(γn) honest noise shares
    are in any sum it helps release: each adding 1/(m_min - floor(γn)) of the variance
    keeps the charged sigma even at the worst survivor set it accepts.
    """
    honest = min_survivors(n, tolerance) - max_colluders(n, collusion)
    if honest <= 0:
        raise SecAggConfigError(
            f"no honest survivor is guaranteed with {n} merchants, dropout tolerance "
            f"{tolerance} and collusion bound {collusion}; lower one of them"
        )
    return 1.0 / honest


@dataclass(frozen=True)
class SecAggParams:
    """What the server proposes for a round: the dropout tolerance δ and collusion bound γ.

    Feasible only when δ < (1 - γ) / 2: the consistency round needs more than (n + C) / 2
    survivor signatures, and at least n - D merchants sign.
    """

    dropout_tolerance: float = DEFAULT_DROPOUT_TOLERANCE
    collusion: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dropout_tolerance", "collusion"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SecAggConfigError(f"{name} must be a number, got {type(value).__name__}")
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise SecAggConfigError(f"{name} must be in [0, 1), got {value}")
        if not self.dropout_tolerance < (1.0 - self.collusion) / 2:
            raise SecAggConfigError(
                f"dropout_tolerance {self.dropout_tolerance} with collusion {self.collusion} is "
                f"infeasible: it must be below (1 - collusion) / 2 = {(1 - self.collusion) / 2:g}"
            )


@dataclass(frozen=True)
class SecAggLimits:
    """A merchant's own bounds: it refuses a round whose parameters fall outside them.

    ``min_collusion`` is the collusion bound the merchant itself assumes; a server may
    propose more caution, never less.
    """

    max_dropout_tolerance: float = DEFAULT_MAX_DROPOUT_TOLERANCE
    min_collusion: float = 0.0
    max_vector_length: int = 1 << 22

    def check(self, params: SecAggParams, vector_length: int) -> None:
        if params.dropout_tolerance > self.max_dropout_tolerance:
            raise SecAggConfigError(
                f"dropout tolerance {params.dropout_tolerance} exceeds this merchant's limit "
                f"{self.max_dropout_tolerance}"
            )
        if params.collusion < self.min_collusion:
            raise SecAggConfigError(
                f"collusion bound {params.collusion} is below this merchant's assumption "
                f"{self.min_collusion}"
            )
        if vector_length > self.max_vector_length:
            raise SecAggConfigError(
                f"{vector_length} values per input exceed this merchant's limit "
                f"{self.max_vector_length}"
            )
