"""Benchmark: one secure-aggregation round (every merchant and the server in one process).

Prints a table and writes benchmarks/results/secagg.json. Besides the plain float sum, each
row reports the cryptographic floor of the run, measured in the same run: the X25519
agreements, ChaCha20 mask expansions and Ed25519 signatures and verifications the round
performed (counted while it ran), times the CPU cost of each primitive timed just after.
Rounds report wall and CPU seconds: on this shared 2-core machine the CPU time is what a
quiet machine's wall time would be (the round is single-threaded).
Signature checks are memoized within the process (signing.py), so the floor counts each
distinct statement once; ``merchant ms`` is the crypto one deployed merchant does alone.
The consistency round (signing S, collecting and checking the certificate) is timed apart.

Usage: python benchmarks/secagg.py [--quick]   (--quick skips the 10,000-merchant round)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fedseg.privacy.secagg import SecAggParams, crypto, run_secagg_round, signing

K, D = 8, 10  # k * (d + 1) = 88 values
RESULTS = Path(__file__).parent / "results" / "secagg.json"


def make_inputs(n: int, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    return {
        f"merchant-{i:05d}": {
            "sums": rng.normal(0, 50, (K, D)),
            "counts": rng.integers(0, 500, K) * 1.0,
        }
        for i in range(n)
    }


class CryptoCounter:
    """Counts the primitives a round calls (patching the module functions it goes through)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._saved = (crypto.exchange, crypto.expand_mask, signing.sign)

    def __enter__(self) -> CryptoCounter:
        exchange, expand, sign = self._saved
        self._misses = signing._verify.cache_info().misses

        def counted(name, fn):
            def wrapper(*args, **kwargs):
                self.counts[name] += 1
                return fn(*args, **kwargs)

            return wrapper

        crypto.exchange = counted("x25519", exchange)
        crypto.expand_mask = counted("chacha20", expand)
        signing.sign = counted("sign", sign)
        return self

    def __exit__(self, *exc) -> None:
        crypto.exchange, crypto.expand_mask, signing.sign = self._saved
        self.counts["verify"] = signing._verify.cache_info().misses - self._misses


def unit_costs(repeats: int = 2000) -> dict[str, float]:
    """Seconds per call of each primitive, timed now (same load as the round)."""
    keys, peer = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key()
    signer, message, seed = Ed25519PrivateKey.generate(), os.urandom(120), os.urandom(32)
    signature, public = signer.sign(message), signer.public_key()

    def per_call(fn) -> float:  # CPU seconds, like the round's own figure
        start = time.process_time()
        for _ in range(repeats):
            fn()
        return (time.process_time() - start) / repeats

    return {
        "x25519": per_call(lambda: keys.exchange(peer)),
        "chacha20": per_call(lambda: crypto.expand_mask(seed, K * (D + 1))),
        "sign": per_call(lambda: signer.sign(message)),
        "verify": per_call(lambda: public.verify(signature, message)),
    }


def merchant_ms(config, unit: dict[str, float]) -> float:
    """Crypto of one deployed merchant: k agreements twice, 1 + k masks, 3 signatures, and
    its own checks of k advertisements, k partner statements and m_min survivor signatures."""
    k, m = config.neighbours, config.min_survivors
    return 1e3 * (2 * k * unit["x25519"] + (1 + k) * unit["chacha20"] + 3 * unit["sign"]
                  + (2 * k + m) * unit["verify"])  # fmt: skip


def bench(n: int, tolerance: float, dropped: float, repeats: int, first_round: int) -> dict:
    rng = np.random.default_rng(n)
    inputs = make_inputs(n, rng)
    names = sorted(inputs)
    gone = rng.choice(n, int(dropped * n), replace=False)
    early = [names[i] for i in gone[: len(gone) // 2]]  # drop before their masked input
    late = [names[i] for i in gone[len(gone) // 2 :]]  # drop before unmasking (still counted)
    params = SecAggParams(dropout_tolerance=tolerance)
    times, cpu, stages = [], [], []
    for round_id in range(first_round, first_round + repeats):  # a fresh session each
        with CryptoCounter() as counter:
            start, start_cpu = time.perf_counter(), time.process_time()
            outcome = run_secagg_round(
                inputs, max_abs_value=1e5, params=params, round_id=round_id,
                drop_before_masked=early, drop_before_unmask=late,
            )  # fmt: skip
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        stages.append(outcome.stage_seconds)
    unit = unit_costs()
    floor_s = sum(counter.counts[name] * unit[name] for name in unit)
    kept = [m for m in names if m not in early]
    plain = {name: sum(inputs[m][name] for m in kept) for name in ("sums", "counts")}
    start = time.perf_counter()
    {name: sum(inputs[m][name] for m in kept) for name in ("sums", "counts")}
    plain_s = time.perf_counter() - start
    error = max(float(np.abs(outcome.sums[k] - plain[k]).max()) for k in plain)
    config, secagg_s, cpu_s = (
        outcome.session.config,
        statistics.median(times),
        statistics.median(cpu),
    )
    consistency = statistics.median(s["consistency"] for s in stages)
    return {"clients": n, "dropout_tolerance": tolerance, "dropped_before_masked": len(early),
            "dropped_before_unmask": len(late), "neighbours": config.neighbours,
            "threshold": config.threshold, "min_survivors": config.min_survivors, "values": 88,
            "secagg_s": secagg_s, "secagg_cpu_s": cpu_s, "stage_s": stages[-1],
            "consistency_s": consistency,
            "plain_s": plain_s, "crypto_counts": dict(counter.counts), "unit_costs_s": unit,
            "crypto_floor_cpu_s": floor_s, "cpu_over_floor": cpu_s / floor_s,
            "merchant_crypto_ms": merchant_ms(config, unit), "max_abs_error": error,
            "error_bound": len(kept) * config.quantization_step / 2}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 10,000-merchant round")
    args = parser.parse_args()
    run_secagg_round(make_inputs(5, np.random.default_rng(0)), max_abs_value=1e5)  # imports
    cases = [(100, 0.3, 0.0, 5), (100, 0.3, 0.3, 5), (1000, 0.3, 0.0, 1), (1000, 0.3, 0.3, 1)]
    if not args.quick:
        cases.append((10_000, 0.3, 0.3, 1))
    rows = [bench(*case, first_round=100 * i) for i, case in enumerate(cases)]
    header = (f"{'clients':>7} {'drop':>5} {'k':>4} {'t':>3} {'m_min':>5} {'wall s':>7} {'cpu s':>7} "
              f"{'consist. s':>10} {'floor s':>8} {'/floor':>6} {'merchant ms':>11} {'max err':>8}")  # fmt: skip
    print(header)
    for r in rows:
        drops = r["dropped_before_masked"] + r["dropped_before_unmask"]
        print(f"{r['clients']:>7} {drops:>5} {r['neighbours']:>4} {r['threshold']:>3} "
              f"{r['min_survivors']:>5} {r['secagg_s']:>7.2f} {r['secagg_cpu_s']:>7.2f} "
              f"{r['consistency_s']:>10.3f} {r['crypto_floor_cpu_s']:>8.3f} {r['cpu_over_floor']:>6.2f} "
              f"{r['merchant_crypto_ms']:>11.1f} {r['max_abs_error']:>8.1e}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"load_average": os.getloadavg(), "rows": rows}, indent=2))
    print(f"wrote {RESULTS} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
