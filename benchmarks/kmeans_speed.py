"""Speed and memory of federated DP K-means at 1 million customers.

1,000,000 customers over 100 merchants (d=8, k=8, ε=1), through the real Flower apps on
the in-process Grid, against scikit-learn ``KMeans(n_init=1)`` on the pooled data, in the
same run. Each side runs in its own process so peak memory (ru_maxrss) is its own.
The fedseg time is split into loading (the merchants read, validate and pseudonymize
their files and build features, once) and fitting (all statistics and Lloyd rounds).

    python benchmarks/kmeans_speed.py [--customers 1000000] [--merchants 100] [--repeat 3]

Prints a table and writes benchmarks/results/kmeans_speed.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baseline import cpu_time, peak_rss_mb

HERE = Path(__file__).parent
D, K = 8, 8


def _fedseg(data: str) -> dict:
    # Both apps imported before the clock starts, as scikit-learn is on its side, with the
    # accountant they import at their first release (as a deployed ClientApp preloads it).
    import dp_accounting.pld  # noqa: F401
    import fedseg.client.app  # noqa: F401
    import fedseg.server.app  # noqa: F401
    from fedseg.simulations.experiments.runner import simulate

    with tempfile.TemporaryDirectory() as out:
        started, cpu = time.perf_counter(), cpu_time()
        model = simulate(
            data, {"k": K, "epsilon": 1.0, "delta": 1e-6, "seed": 0}, out_dir=out, evaluate=False
        ).model
        wall, cpu = time.perf_counter() - started, cpu_time() - cpu
    loading = sum(h.get("seconds", 0.0) for h in model.history if h["task"] == "describe")
    fitting = sum(h.get("seconds", 0.0) for h in model.history if h["task"] != "describe")
    return {"wall_s": wall, "cpu_s": cpu, "loading_s": loading, "fit_s": fitting,
            "rounds": sum(h["task"] == "cluster_displacements" for h in model.history)}  # fmt: skip


def _sklearn(data: str) -> dict:
    import numpy as np
    import pandas as pd
    from sklearn.cluster import KMeans

    files = sorted((Path(data) / "merchants").glob("*.parquet"))
    started, cpu = time.perf_counter(), time.process_time()
    x = np.vstack([pd.read_parquet(f).drop(columns="user_id").to_numpy() for f in files])
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    model = KMeans(n_clusters=K, n_init=1, random_state=0).fit(x)
    fit_s = time.perf_counter() - started
    return {"fit_s": fit_s, "read_s": read_s, "read_fit_s": read_s + fit_s,
            "read_fit_cpu_s": time.process_time() - cpu, "iterations": int(model.n_iter_)}  # fmt: skip


def _child(kind: str, data: str) -> None:
    result = _fedseg(data) if kind == "fedseg" else _sklearn(data)
    result["peak_rss_mb"], result["worker_peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def _run(kind: str, data: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(data)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--merchants", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each side")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(*args.child)
    from fedseg.simulations.data.mixture import (
        gaussian_mixture_federation,
        write_mixture_federation,
    )

    with tempfile.TemporaryDirectory() as root:
        mix = gaussian_mixture_federation(
            n=args.customers, d=D, k=K, merchants=args.merchants, alpha=1.0, seed=0
        )
        data = write_mixture_federation(mix, Path(root) / "fed", fmt="parquet")
        del mix
        sks, fss = [], []
        for _ in range(args.repeat):  # interleaved; the best of each (shared machine)
            sks.append(_run("sklearn", data))
            fss.append(_run("fedseg", data))
        sk = min(sks, key=lambda r: r["read_fit_s"])
        fs = min(fss, key=lambda r: r["wall_s"])
    result = {"customers": args.customers, "merchants": args.merchants, "d": D, "k": K, "epsilon": 1.0,
              "sklearn": sk, "fedseg": fs, "fit_ratio": fs["fit_s"] / sk["fit_s"],
              "wall_ratio": fs["wall_s"] / sk["fit_s"],
              "wall_vs_read_fit": fs["wall_s"] / sk["read_fit_s"],
              "cpu_vs_read_fit": fs["cpu_s"] / sk["read_fit_cpu_s"],
              "all_sklearn": sks, "all_fedseg": fss}  # fmt: skip
    print(f"{'':28} {'seconds':>8} {'÷ sklearn':>9} {'peak MB':>8}")
    print(
        f"{'sklearn KMeans(n_init=1)':28} {sk['fit_s']:>8.2f} {1:>9.2f} {sk['peak_rss_mb']:>8.0f}"
    )
    print(
        f"{'fedseg fit (all rounds)':28} {fs['fit_s']:>8.2f} {result['fit_ratio']:>9.2f} {fs['peak_rss_mb']:>8.0f}"
    )
    print(
        f"{'fedseg loading (once)':28} {fs['loading_s']:>8.2f} {fs['loading_s'] / sk['fit_s']:>9.2f}"
    )
    print(f"{'fedseg end to end':28} {fs['wall_s']:>8.2f} {result['wall_ratio']:>9.2f}")
    print(f"{'sklearn read + fit':28} {sk['read_fit_s']:>8.2f}   (CPU {sk['read_fit_cpu_s']:.2f})")
    print(
        f"fedseg wall ÷ sklearn read + fit: {result['wall_vs_read_fit']:.2f} "
        f"(CPU ÷ CPU {result['cpu_vs_read_fit']:.2f})"
    )
    out = HERE / "results" / "kmeans_speed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
