"""The same apps on Flower's Ray simulation engine against the in-process Grid.

1,000 merchants × 100 customers (d = 8 mixture, Parquet features tables, k = 5, ε = 1,
up to 10 DP Lloyd rounds), the same run config and seed on both backends, each in its own
process. Ray starts a local cluster (one actor per core) unless ``RAY_ADDRESS`` names one.
CPU seconds are the process's own and its reaped children's; Ray's workers are its
children only while the cluster is local.

    python benchmarks/ray_speed.py [--merchants 1000] [--customers 100]

Prints a table and writes benchmarks/results/ray_speed.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from baseline import run_child

RESULTS = Path(__file__).parent / "results" / "ray_speed.json"
CONFIG = {"k": 5, "epsilon": 1.0, "rounds": 10, "seed": 0, "as-of": "2026-01-01"}


def _cpu_s() -> float:
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(data_dir: str, backend: str) -> None:
    import fedseg.client.app  # noqa: F401 - imports before the clock
    import fedseg.server.app  # noqa: F401
    from fedseg.simulations.experiments.runner import simulate

    with tempfile.TemporaryDirectory(prefix="fedseg-ray-out-") as out:
        started, cpu = time.perf_counter(), _cpu_s()
        result = simulate(data_dir, CONFIG, out_dir=out, backend=backend, evaluate=False)
        wall, cpu = time.perf_counter() - started, _cpu_s() - cpu
        model = json.loads((Path(out) / "model.json").read_text())
    print(json.dumps({"backend": backend, "wall_s": wall, "cpu_s": cpu,
                      "rounds": result.metrics["rounds"],
                      "centroids": model["centroids"],
                      "centroids_sha256": hashlib.sha256(
                          json.dumps(model["centroids"]).encode()).hexdigest()}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merchants", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=100, help="per merchant")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    from fedseg.simulations.data.mixture import (
        gaussian_mixture_federation,
        write_mixture_federation,
    )

    rows = []
    with tempfile.TemporaryDirectory(prefix="fedseg-ray-") as root:
        mix = gaussian_mixture_federation(n=args.merchants * args.customers, d=8, k=5,
                                          merchants=args.merchants, alpha=1.0, seed=0)  # fmt: skip
        data = write_mixture_federation(mix, Path(root) / "fed", fmt="parquet")
        for backend in ("inprocess", "ray"):
            out = run_child([__file__, "--child", str(data), backend], pythonpath=None)
            rows.append(json.loads(out.strip().splitlines()[-1]))
    local, ray = rows
    result = {"merchants": args.merchants, "customers_each": args.customers, "config": CONFIG,
              "rows": rows, "ray_over_inprocess": ray["wall_s"] / local["wall_s"],
              "same_centres": local["centroids_sha256"] == ray["centroids_sha256"],
              # Replies are summed in the order of node ids, which Ray draws at random.
              "max_centre_difference": float(np.max(np.abs(
                  np.asarray(local["centroids"]) - np.asarray(ray["centroids"]))))}  # fmt: skip
    for row in rows:
        print(f"{row['backend']:>10}: {row['wall_s']:7.1f} s wall, {row['cpu_s']:7.1f} s CPU, "
              f"{row['rounds']} rounds")  # fmt: skip
    print(f"ray ÷ in-process: {result['ray_over_inprocess']:.1f}×; same centres: "
          f"{result['same_centres']} (largest difference {result['max_centre_difference']:.2e})")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
