"""A real local deployment against the in-process run of the same federation and seed.

Cases: ``demo`` is ``fedseg demo-deploy --merchants 3`` (3 × 1,000 customers as events,
TLS, SuperNode authentication, k = 4, ε = 2, 3 Lloyd rounds); ``1m`` is two merchants with
1,000,000 customers each (features tables, d = 8, k = 8, ε = 1), deployed twice on the same
state directories so the second deployment starts from each merchant's feature cache.
Each deployment runs in test mode (node-config seed), so its model must equal the
in-process one; the second deployment on the same state directories draws the next noise
streams of each merchant's ledger (never the same noise twice), so its model differs. Variants: ``fedseg`` (one long-lived ClientApp process per SuperNode and a
short poll while a run is active, the default) and ``flower`` (Flower's own: a ClientApp
process per message, 3 s SuperNode poll). Round seconds are the ServerApp's (model.json
history), in-process rounds from the same federation in this process; CPU seconds are
this process's and its reaped children's (the SuperLink's detached ServerApp is not
counted). The machine is shared, so compare within a run.

    python benchmarks/deploy_speed.py [--cases demo,1m] [--variants fedseg,flower] [--baseline main]

With ``--baseline REF`` each case is also deployed once with fedseg as of git REF (every
process of that deployment imports the earlier code: benchmarks/baseline.py), in the same
job, as the row ``REF``.

Prints a table and writes benchmarks/results/deploy_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from baseline import baseline_path, cpu_time, run_child
from fedseg.simulations.data.federation import write_federation
from fedseg.simulations.data.mixture import gaussian_mixture_federation, write_mixture_federation
from fedseg.simulations.data.synthetic import generate_federation
from fedseg.simulations.deploy.demo import run_demo
from fedseg.simulations.experiments.runner import simulate

RESULTS = Path(__file__).parent / "results" / "deploy_speed.json"
VARIANTS = {"fedseg": {}, "flower": {"worker": False, "poll_interval": None}}
TEST_SEED = 0


def federation(case: str, root: Path) -> tuple[Path, dict]:
    if case == "demo":
        fed = generate_federation(users=3000, merchants=3, segments=4, seed=0)
        config = {"k": 4, "epsilon": 2.0, "rounds": 3, "min-clients": 2}
        return write_federation(fed, root / "federation"), config
    mix = gaussian_mixture_federation(n=2_000_000, d=8, k=8, merchants=2, alpha=1.0, seed=0)
    config = {"k": 8, "epsilon": 1.0, "delta": 1e-6, "min-clients": 2}
    return write_mixture_federation(mix, root / "federation", fmt="parquet"), config


def rounds(model) -> list[tuple[str, float]]:
    return [(h["task"], float(h.get("seconds", 0.0))) for h in model.history]


def in_process(data: Path, config: dict, out: Path) -> dict:
    started, cpu = time.perf_counter(), cpu_time()
    model = simulate(data, {**config, "seed": TEST_SEED}, out_dir=out, evaluate=False).model
    return {"wall_s": time.perf_counter() - started, "cpu_s": cpu_time() - cpu,
            "rounds": rounds(model), "centroids": model.centroids}  # fmt: skip


def deployed(data: Path, config: dict, work: Path, variant: str, cap: float) -> dict:
    started, cpu = time.perf_counter(), cpu_time()
    result = run_demo(data, work, run_config=config, test_seed=TEST_SEED, epsilon_cap=cap,
                      deployment_options=VARIANTS[variant])  # fmt: skip
    return {"wall_s": time.perf_counter() - started, "cpu_s": cpu_time() - cpu,
            "phases": result.phases, "rounds": rounds(result.model),
            "centroids": result.model.centroids}  # fmt: skip


def earlier(data: Path, config: dict, work: Path, ref: str, cap: float) -> dict:
    """The same deployment with fedseg as of ``ref``, in a child process (and its children)."""
    args = [__file__, "--child", str(data), json.dumps(config), str(work), str(cap)]
    row = json.loads(run_child(args, pythonpath=baseline_path(ref)).strip().splitlines()[-1])
    row["phases"] = row.get("phases") or {}
    return row


def _child(data: str, config: str, work: str, cap: str) -> None:
    started, cpu = time.perf_counter(), cpu_time()
    result = run_demo(data, work, run_config=json.loads(config), test_seed=TEST_SEED,
                      epsilon_cap=float(cap))  # fmt: skip
    print(json.dumps({"wall_s": time.perf_counter() - started, "cpu_s": cpu_time() - cpu,
                      "phases": getattr(result, "phases", {}), "rounds": rounds(result.model),
                      "centroids": np.asarray(result.model.centroids).tolist()}))  # fmt: skip


def compare(row: dict, local: dict) -> dict:
    """Per-round seconds, deployed minus in-process, leaving out the first (describe: the
    node is built or read from the cache) and the plan (the accountant's first use). An
    earlier fedseg may run other rounds: then each is compared with the in-process median."""
    deployed = [seconds for _, seconds in row["rounds"]][2:]
    local_s = [seconds for _, seconds in local["rounds"]][2:]
    paired = [t for t, _ in row["rounds"]] == [t for t, _ in local["rounds"]]
    against = local_s if paired else [statistics.median(local_s)] * len(deployed)
    same = paired and np.allclose(row["centroids"], local["centroids"], rtol=0, atol=1e-9)
    return {
        "first_round_s": row["rounds"][0][1],
        "round_median_s": statistics.median(deployed),
        "round_max_s": max(deployed),
        "inprocess_round_median_s": statistics.median(local_s),
        "extra_max_s": max(d - s for d, s in zip(deployed, against, strict=True)),
        "ratio_median": statistics.median(d / s for d, s in zip(deployed, against, strict=True)),
        "same_model": bool(same),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="demo,1m")
    parser.add_argument("--variants", default="fedseg,flower")
    parser.add_argument("--baseline", help="git ref deployed once per case, in the same job")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(*args.child)
    table = []
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory(prefix=f"fedseg-deploy-{case}-") as scratch:
            root = Path(scratch)
            data, config = federation(case, root)
            local = in_process(data, config, root / "sim")
            table.append({"case": case, "variant": "in-process", **_public(local)})
            for variant in args.variants.split(","):
                repeats = ("first", "cached") if case == "1m" else ("first",)
                work = root / f"deploy-{variant}"
                for repeat in repeats:  # same work dir: the second starts from the caches
                    row = deployed(data, config, work, variant, cap=4 * config["epsilon"])
                    row.update(compare(row, local))
                    table.append({"case": case, "variant": f"{variant} ({repeat})", **_public(row)})
                    _print(table[-1], local)
            if args.baseline:
                row = earlier(data, config, root / "deploy-baseline", args.baseline,
                              cap=4 * config["epsilon"])  # fmt: skip
                row.update(compare(row, local))
                table.append({"case": case, "variant": args.baseline, **_public(row)})
                _print(table[-1], local)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(table, indent=1))
    print(f"wrote {RESULTS}")


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "centroids"}


def _print(row: dict, local: dict) -> None:
    print(
        f"{row['case']:>5} {row['variant']:<18} whole {row['wall_s']:6.1f} s (CPU {row['cpu_s']:5.1f})"
        f" | in-process {local['wall_s']:5.2f} s | first round {row['first_round_s']:5.2f} s"
        f" | later rounds median {row['round_median_s']:.2f} s, max {row['round_max_s']:.2f} s"
        f" (in-process {row['inprocess_round_median_s']:.3f} s; ×{row['ratio_median']:.1f};"
        f" max extra {row['extra_max_s']:.2f} s) | same model {row['same_model']}"
        f" | phases {', '.join(f'{k} {v:.1f}' for k, v in row['phases'].items())}",
        flush=True,
    )


if __name__ == "__main__":
    main()
