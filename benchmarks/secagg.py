"""Benchmark: one secure-aggregation round (all clients + server in one process) vs plain sums.

Prints a table and writes benchmarks/results/secagg.json. Besides the plain float sum, each
row reports the X25519 floor (the 2*n*k key agreements every round must do, timed in the same
run) so the figures can be read on a loaded machine. Usage: python benchmarks/secagg.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fedseg.privacy.secagg import SecAggConfig, run_secagg_round

K, D = 8, 10  # k * (d + 1) = 88 values
SPEC = (("sums", (K, D)), ("counts", (K,)))
RESULTS = Path(__file__).parent / "results" / "secagg.json"


def make_inputs(n: int, rng: np.random.Generator) -> dict[int, dict[str, np.ndarray]]:
    return {
        node: {"sums": rng.normal(0, 50, (K, D)), "counts": rng.integers(0, 500, K) * 1.0}
        for node in range(n)
    }


def plain_seconds(inputs, repeats: int) -> float:
    def once():
        start = time.perf_counter()
        {name: sum(v[name] for v in inputs.values()) for name, _ in SPEC}
        return time.perf_counter() - start

    return statistics.median(once() for _ in range(repeats))


def x25519_floor_seconds(exchanges: int) -> float:
    keys = [X25519PrivateKey.generate() for _ in range(64)]
    peer = X25519PrivateKey.generate().public_key()
    start = time.perf_counter()
    for i in range(exchanges):
        keys[i % 64].exchange(peer)
    return time.perf_counter() - start


def bench(n: int, dropout_rate: float, drop_after: float, repeats: int) -> dict:
    rng = np.random.default_rng(n)
    config = SecAggConfig.choose(
        num_clients=n, vector_spec=SPEC, max_abs_value=1e5, dropout_rate=dropout_rate
    )
    inputs = make_inputs(n, rng)
    late = set(rng.choice(n, int(drop_after * n), replace=False).tolist())
    times, error = [], 0.0
    for round_id in range(repeats):
        start = time.perf_counter()
        released = run_secagg_round(inputs, config, round_id=round_id, drop_after_masked=late)
        times.append(time.perf_counter() - start)
    plain = {name: sum(v[name] for v in inputs.values()) for name, _ in SPEC}
    error = max(float(np.abs(released[name] - plain[name]).max()) for name in plain)
    secagg_s, plain_s = statistics.median(times), plain_seconds(inputs, 5)
    floor_s = x25519_floor_seconds(2 * n * config.neighbours)
    return {"clients": n, "dropout_rate": dropout_rate, "dropped_after_masked": len(late),
            "neighbours": config.neighbours, "threshold": config.threshold, "values": 88,
            "secagg_s": secagg_s, "plain_s": plain_s, "overhead_ratio": secagg_s / plain_s,
            "x25519_floor_s": floor_s, "secagg_over_floor": secagg_s / floor_s,
            "max_abs_error": error, "error_bound": n * config.quantization_step / 2}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 1,000-client k=174 case")
    args = parser.parse_args()
    # fedseg's default dropout tolerance is 0.1 (k and t in docs/secagg.md); 0.3 for contrast.
    cases = [(100, 0.1, 0.0, 3), (100, 0.1, 0.1, 3), (100, 0.3, 0.0, 3), (100, 0.3, 0.3, 3),
             (1000, 0.1, 0.0, 1), (1000, 0.1, 0.1, 1)]  # fmt: skip
    if not args.quick:
        cases.append((1000, 0.3, 0.0, 1))
    rows = [bench(*case) for case in cases]
    header = f"{'clients':>7} {'drop':>5} {'late':>5} {'k':>4} {'t':>4} {'secagg s':>9} "
    header += f"{'plain s':>9} {'ratio':>9} {'x25519 s':>9} {'/floor':>7} {'max err':>9}"
    print(header)
    for r in rows:
        print(f"{r['clients']:>7} {r['dropout_rate']:>5} {r['dropped_after_masked']:>5} "
              f"{r['neighbours']:>4} {r['threshold']:>4} {r['secagg_s']:>9.3f} "
              f"{r['plain_s']:>9.2e} {r['overhead_ratio']:>9.0f} {r['x25519_floor_s']:>9.3f} "
              f"{r['secagg_over_floor']:>7.2f} {r['max_abs_error']:>9.1e}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
