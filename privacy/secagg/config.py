"""Public parameters of a secure-aggregation round and how they are chosen.

See docs/secagg.md for the derivation of the neighbour count ``neighbours`` (k) and the
Shamir threshold ``threshold`` (t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedseg.privacy.secagg.errors import SecAggConfigError

VectorSpec = tuple[tuple[str, tuple[int, ...]], ...]

# 2^-20: chance that random dropouts make a round abort; 2^-40: chance of a privacy failure.
CORRECTNESS_FAILURE = 2.0**-20
SECURITY_FAILURE = 2.0**-40
MODULUS_BITS = 64
MAX_SCALE_BITS = 40


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters every client and the server agree on before a round.

    ``neighbours`` is k, each client's degree in the masking/sharing graph (a complete
    graph when k == num_clients - 1); ``threshold`` is t, the number of shares needed to
    rebuild a secret. Inputs are encoded as round(x * 2**scale_bits) mod 2**64.
    """

    num_clients: int
    neighbours: int
    threshold: int
    scale_bits: int
    max_abs_value: float
    vector_spec: VectorSpec

    def __post_init__(self) -> None:
        if self.num_clients < 2:
            raise SecAggConfigError(f"num_clients must be >= 2, got {self.num_clients}")
        if not 1 <= self.neighbours <= self.num_clients - 1:
            raise SecAggConfigError(
                f"neighbours must be in [1, num_clients-1], got {self.neighbours}"
            )
        if not 2 <= self.threshold <= self.neighbours:
            raise SecAggConfigError(f"threshold must be in [2, neighbours], got {self.threshold}")
        if 2 * self.threshold <= self.neighbours:
            raise SecAggConfigError(
                f"threshold {self.threshold} must exceed neighbours/2 = {self.neighbours / 2}"
            )
        if not (math.isfinite(self.max_abs_value) and self.max_abs_value > 0):
            raise SecAggConfigError(
                f"max_abs_value must be finite and > 0, got {self.max_abs_value}"
            )
        if not 0 <= self.scale_bits <= MAX_SCALE_BITS:
            raise SecAggConfigError(f"scale_bits must be in [0, {MAX_SCALE_BITS}]")
        _check_headroom(self.num_clients, self.max_abs_value, self.scale_bits)
        _check_spec(self.vector_spec)

    @property
    def vector_length(self) -> int:
        """Number of uint64 words in one flattened input."""
        return sum(math.prod(shape) for _, shape in self.vector_spec)

    @property
    def quantization_step(self) -> float:
        """Spacing of the fixed-point grid (each value is rounded to half of it)."""
        return 2.0**-self.scale_bits

    @classmethod
    def choose(
        cls,
        *,
        num_clients: int,
        vector_spec: VectorSpec,
        max_abs_value: float,
        dropout_rate: float = 0.3,
        corruption_rate: float = 0.0,
        scale_bits: int | None = None,
    ) -> SecAggConfig:
        """Smallest neighbour count k (and its threshold) meeting the documented bounds."""
        if not 0 <= dropout_rate < 1 or not 0 <= corruption_rate < 1:
            raise SecAggConfigError("dropout_rate and corruption_rate must be in [0, 1)")
        k, t = choose_graph(num_clients, dropout_rate, corruption_rate)
        if scale_bits is None:
            scale_bits = max_scale_bits(num_clients, max_abs_value)
        return cls(num_clients, k, t, scale_bits, float(max_abs_value), _freeze(vector_spec))


def choose_graph(n: int, dropout_rate: float, corruption_rate: float) -> tuple[int, int]:
    """(k, t) for n clients when at most floor(rate * n) clients drop / are corrupted."""
    if n < 3:
        raise SecAggConfigError(f"num_clients must be >= 3 for secure aggregation, got {n}")
    dropped, corrupt = math.floor(dropout_rate * n), math.floor(corruption_rate * n)
    for k in [*range(2, n - 1, 2), n - 1]:
        c = _corrupt_neighbours(n, corrupt, k)
        t = (k + c) // 2 + 1  # 2t > k + c: no split of the neighbours reveals both secrets
        if t > k or t < 2:
            continue
        # a client's secrets are lost when more than k - t of its neighbours drop
        abort = n * _hypergeom(n - 1, dropped, k).sf(k - t)
        if (
            abort <= CORRECTNESS_FAILURE
            and _disconnect(n, dropped + corrupt, k) <= SECURITY_FAILURE
        ):
            return k, t
    raise SecAggConfigError(
        f"dropout_rate={dropout_rate} with corruption_rate={corruption_rate} is infeasible for "
        f"{n} clients (needs dropout_rate < (1 - corruption_rate) / 2)"
    )


def _corrupt_neighbours(n: int, corrupt: int, k: int) -> int:
    """Corrupted neighbours of any client, exceeded with probability <= 2^-40."""
    if corrupt == 0:
        return 0
    return int(_hypergeom(n - 1, corrupt, k).isf(SECURITY_FAILURE / n))


def _disconnect(n: int, removed: int, k: int) -> float:
    """Union bound on k/2 consecutive ring positions all removed (honest graph split)."""
    if k >= n - 1:
        return 0.0
    half = k // 2
    if removed < half:
        return 0.0
    return n * math.prod((removed - i) / (n - i) for i in range(half))


def max_scale_bits(num_clients: int, max_abs_value: float) -> int:
    """Largest fraction bits f with num_clients * max_abs_value * 2^f < 2^62."""
    bits = math.floor(62 - math.log2(num_clients * max_abs_value))
    if bits < 0:
        raise SecAggConfigError(
            f"max_abs_value={max_abs_value} too large for {num_clients} clients"
        )
    return min(bits, MAX_SCALE_BITS)


def _check_headroom(n: int, max_abs: float, scale_bits: int) -> None:
    # The signed sum of n values must stay inside (-2^63, 2^63) to decode unambiguously.
    if n * (max_abs * 2.0**scale_bits + 1) >= 2.0 ** (MODULUS_BITS - 1):
        raise SecAggConfigError(
            f"num_clients * max_abs_value * 2^scale_bits overflows the 2^64 modulus "
            f"(n={n}, max_abs_value={max_abs}, scale_bits={scale_bits})"
        )


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
    # Imported here: scipy.stats costs about a second, and only the server chooses k and t.
    from scipy.stats import hypergeom

    return hypergeom(population, marked, drawn)
