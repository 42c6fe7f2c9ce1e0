"""How far one machine goes: in-process simulations with many merchants or many customers.

Cases (merchants × customers each, d=8 Gaussian mixture, k=5, ε=1, up to 10 DP Lloyd rounds):
10,000 × 100 (many small merchants) and 100 × 10,000 (1M customers), plus a 1,000 × 100
warm-up. Each row: time to write the federation, time of the simulation (every message
through the real ServerApp/ClientApp and the in-process Grid), messages, µs per message,
and the same data clustered by scikit-learn KMeans(n_init=1) in one process as the
baseline (ratio = simulation ÷ sklearn). ``--profile`` adds the top functions by
cumulative time (cProfile) for the largest case.

    python benchmarks/scale.py [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
from fedseg.simulations.data.mixture import gaussian_mixture_federation, write_mixture_federation
from fedseg.simulations.experiments.runner import simulate
from sklearn.cluster import KMeans

CASES = ((1_000, 100), (10_000, 100), (100, 10_000))
QUICK_CASES = ((200, 100), (20, 5_000))
DIMS, K, ROUNDS, EPSILON = 8, 5, 10, 1.0
RESULTS = Path(__file__).parent / "results" / "scale.json"


def run_case(merchants: int, per_merchant: int, *, profile: bool) -> dict:
    mixture = gaussian_mixture_federation(
        n=merchants * per_merchant, d=DIMS, k=K, merchants=merchants, alpha=1.0, seed=0
    )
    with tempfile.TemporaryDirectory(prefix="fedseg-scale-") as scratch:
        started = time.perf_counter()
        data_dir = write_mixture_federation(mixture, Path(scratch) / "fed", fmt="parquet")
        write_s = time.perf_counter() - started
        config = {"k": K, "epsilon": EPSILON, "rounds": ROUNDS, "seed": 0}
        profiler = cProfile.Profile() if profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        result = simulate(data_dir, config, out_dir=Path(scratch) / "out", evaluate=False)
        if profiler:
            profiler.disable()
        sim_s = time.perf_counter() - started
        sim_cpu_s = time.process_time() - cpu_started
    x = np.vstack(mixture.parts)
    started = time.perf_counter()
    KMeans(n_clusters=K, n_init=1, random_state=0).fit(x)
    sklearn_s = time.perf_counter() - started
    messages = sum(h.get("asked", 0) for h in result.model.history) + merchants  # + describe
    row = {
        "merchants": merchants,
        "customers": merchants * per_merchant,
        "rounds": result.metrics["rounds"],
        "write_s": write_s,
        "simulate_s": sim_s,
        "simulate_cpu_s": sim_cpu_s,
        "messages": messages,
        "us_per_message": 1e6 * sim_s / messages,
        "sklearn_s": sklearn_s,
        "ratio_vs_sklearn": sim_s / sklearn_s,
    }
    if profiler:
        row["profile_top"] = _top(profiler)
    return row


def _top(profiler: cProfile.Profile, n: int = 25) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(n)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases only (CI smoke run)")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest case")
    parser.add_argument("--cases", help="e.g. 1000x100,100x10000 (merchants x customers each)")
    args = parser.parse_args()
    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        cases = tuple(tuple(int(v) for v in c.split("x")) for c in args.cases.split(","))
    rows = []
    for i, (merchants, per_merchant) in enumerate(cases):
        profile = args.profile and merchants == max(c[0] for c in cases)  # many merchants
        rows.append(run_case(merchants, per_merchant, profile=profile))
        _print_row(rows[-1], header=i == 0)
    for row in rows:
        if "profile_top" in row:
            print(row["profile_top"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"cases": rows, "dims": DIMS, "k": K, "epsilon": EPSILON}, indent=2)
    )
    print(f"wrote {RESULTS}")


def _print_row(row: dict, *, header: bool) -> None:
    columns = ("merchants", "customers", "rounds", "write_s", "simulate_s", "simulate_cpu_s",
               "messages", "us_per_message", "sklearn_s", "ratio_vs_sklearn")  # fmt: skip
    if header:
        print(" | ".join(f"{c:>14}" for c in columns))
    print(
        " | ".join(
            f"{row[c]:>14,.3f}" if isinstance(row[c], float) else f"{row[c]:>14,}" for c in columns
        )
    )


if __name__ == "__main__":
    main()
