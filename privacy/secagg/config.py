"""The derived parameters of a round: graph degree k, Shamir threshold t, encoding.

Every merchant and the server compute the same config from public inputs only: the
pinned roster's size n, the round's :class:`SecAggParams`, the vector spec and the
encoding bound. See docs/secagg.md for the bounds behind ``choose_graph``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache

from fedseg.privacy.secagg.digest import request_digest
from fedseg.privacy.secagg.errors import SecAggConfigError
from fedseg.privacy.secagg.params import (
    SecAggParams,
    max_colluders,
    max_dropouts,
    min_survivors,
    noise_share,
)

VectorSpec = tuple[tuple[str, tuple[int, ...]], ...]

# 2^-20: chance that random dropouts within the tolerance abort a round;
# 2^-40: chance that the corrupted-neighbour bound c fails (a privacy failure).
CORRECTNESS_FAILURE = 2.0**-20
SECURITY_FAILURE = 2.0**-40
MAX_SCALE_BITS = 40
# The honest sum uses at most 2^(63 - HEADROOM_BITS) of the ring: a reply of random words
# passes the server's range check with probability <= 2^-HEADROOM_BITS.
HEADROOM_BITS = 4


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters all parties derive identically (never taken from a server message).

    ``neighbours`` is k (the complete graph when k == n - 1), ``threshold`` t (shares
    needed to rebuild a secret), ``corrupt_neighbours`` c (colluders among any client's k
    neighbours, exceeded with probability <= 2^-40) and ``side_corrupt`` the same bound
    for the k/2 neighbours on one side of the ring.
    """

    num_clients: int
    dropout_tolerance: float
    collusion: float
    neighbours: int
    threshold: int
    corrupt_neighbours: int
    side_corrupt: int
    min_survivors: int
    scale_bits: int
    max_abs_value: float
    vector_spec: VectorSpec

    def __post_init__(self) -> None:
        n, k, t = self.num_clients, self.neighbours, self.threshold
        if not 2 <= k <= n - 1 or not self.corrupt_neighbours < t <= k:
            raise SecAggConfigError(f"need 2 <= k <= n-1 and c < t <= k (n={n}, k={k}, t={t})")
        if 2 * self.min_survivors <= n + max_colluders(n, self.collusion):
            raise SecAggConfigError("min_survivors must exceed (n + colluders) / 2")
        if not (math.isfinite(self.max_abs_value) and self.max_abs_value > 0):
            raise SecAggConfigError(
                f"max_abs_value must be finite and > 0, got {self.max_abs_value}"
            )
        if n * self.max_word >= 2 ** (63 - HEADROOM_BITS) or not 0 <= self.scale_bits <= 40:
            raise SecAggConfigError("n * max_abs_value * 2^scale_bits leaves no ring headroom")
        _check_spec(self.vector_spec)

    @classmethod
    def derive(
        cls,
        *,
        num_clients: int,
        params: SecAggParams,
        vector_spec,
        max_abs_value: float,
    ) -> SecAggConfig:
        """The config of a round for a pinned roster of ``num_clients`` merchants."""
        n = num_clients
        if n < 3:
            raise SecAggConfigError(f"secure aggregation needs a roster of >= 3, got {n}")
        dropped = max_dropouts(n, params.dropout_tolerance)
        corrupt = max_colluders(n, params.collusion)
        k, t, c, side = choose_graph(n, dropped, corrupt)
        return cls(
            n, params.dropout_tolerance, params.collusion, k, t, c, side,
            min_survivors(n, params.dropout_tolerance), max_scale_bits(n, max_abs_value),
            float(max_abs_value), _freeze(vector_spec),
        )  # fmt: skip

    @property
    def complete(self) -> bool:
        return self.neighbours >= self.num_clients - 1

    @property
    def vector_length(self) -> int:
        return sum(math.prod(shape) for _, shape in self.vector_spec)

    @property
    def quantization_step(self) -> float:
        return 2.0**-self.scale_bits

    @property
    def max_word(self) -> int:
        """Largest |encoded word| of one clipped input value."""
        return round(self.max_abs_value * 2.0**self.scale_bits)

    @property
    def noise_share(self) -> float:
        return noise_share(self.num_clients, self.dropout_tolerance, self.collusion)

    @cached_property
    def digest(self) -> bytes:
        fields = asdict(self)
        fields["vector_spec"] = [[name, list(shape)] for name, shape in self.vector_spec]
        return request_digest(fields)


@lru_cache(maxsize=256)
def choose_graph(n: int, dropped: int, corrupt: int) -> tuple[int, int, int, int]:
    """(k, t, c, c_side): the smallest even k whose guard and threshold hold, else n - 1.

    Guard: every survivor keeps more than c_side surviving neighbours on each ring side;
    threshold: t is the largest value such that every secret keeps t live holders; both
    fail under ``dropped`` random dropouts with probability <= 2^-20, and t > c.
    """
    for k in range(2, n - 1, 2):
        c, side = _corrupt_bound(n, corrupt, k), _corrupt_bound(n, corrupt, k // 2)
        lonely_side = 2 * n * _hypergeom(n - 1, dropped, k // 2).sf(k // 2 - side - 1)
        t = _largest_threshold(n, dropped, k)
        if lonely_side <= CORRECTNESS_FAILURE and t > max(c, 1):
            return k, t, c, side
    k = n - 1  # complete graph: every bound is deterministic
    t, c = k - dropped, min(corrupt, k)
    if t <= c or t < 2:
        raise SecAggConfigError(
            f"{n} merchants cannot tolerate {dropped} dropouts with {corrupt} colluders"
        )
    return k, t, c, c


def _largest_threshold(n: int, dropped: int, k: int) -> int:
    # Live holders of a secret: k minus its dropped neighbours (hypergeometric).
    live_tail = _hypergeom(n - 1, dropped, k)
    t = k
    while t > 0 and n * live_tail.sf(k - t) > CORRECTNESS_FAILURE:
        t -= 1
    return t


def _corrupt_bound(n: int, corrupt: int, drawn: int) -> int:
    if corrupt == 0:
        return 0
    return int(_hypergeom(n - 1, corrupt, drawn).isf(SECURITY_FAILURE / n))


def max_scale_bits(n: int, max_abs_value: float) -> int:
    """Largest fraction bits f with n * max_abs_value * 2^f < 2^(63 - HEADROOM_BITS)."""
    bits = math.floor(63 - HEADROOM_BITS - math.log2(n * max_abs_value)) - 1
    if bits < 0:
        raise SecAggConfigError(f"max_abs_value={max_abs_value} too large for {n} merchants")
    return min(bits, MAX_SCALE_BITS)


def _check_spec(spec: VectorSpec) -> None:
    names = [name for name, _ in spec]
    if not spec or len(set(names)) != len(names):
        raise SecAggConfigError(f"vector_spec needs distinct field names, got {names}")
    for name, shape in spec:
        if not all(isinstance(d, int) and d >= 1 for d in shape):
            raise SecAggConfigError(f"vector_spec field {name!r} has a bad shape {shape}")


def _freeze(spec) -> VectorSpec:
    items = spec.items() if isinstance(spec, dict) else spec
    return tuple((str(name), tuple(int(d) for d in shape)) for name, shape in items)


def _hypergeom(population: int, marked: int, drawn: int):
    # Imported here: scipy.stats costs about a second to import.
    from scipy.stats import hypergeom

    return hypergeom(population, marked, drawn)


def input_spec(shapes) -> VectorSpec:
    """The parts of a secure input as both sides encode them: sorted by name."""
    return tuple((str(name), tuple(int(n) for n in shapes[name])) for name in sorted(shapes))
