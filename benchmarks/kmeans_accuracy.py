"""Accuracy of federated DP K-means against non-private and central-DP baselines.

Gaussian mixture (n=100k, d=10, k=5; centres ≥ 6σ apart), split over merchants with
Dirichlet(α) persona mixes. Per scenario, seed and ε, side by side in one run:
scikit-learn KMeans(n_init=10) on the pooled data (non-private reference), diffprivlib's
KMeans (central DP, run from its own virtualenv because it does not import with
scikit-learn 1.9) and fedseg through the real Flower apps on the in-process Grid.

    python benchmarks/kmeans_accuracy.py                 # everything, 5 seeds
    python benchmarks/kmeans_accuracy.py --quick         # 2 seeds, ε ∈ {0.25, 1, ∞}
    python benchmarks/kmeans_accuracy.py --scenarios m2000-a0.5 --seeds 3 --epsilons 0.25,1,4,inf

Each finished (scenario, seed) is appended to benchmarks/results/kmeans_accuracy.jsonl, and
a re-run skips those already there (delete the file to start over). Prints a table
(medians over seeds) and writes benchmarks/results/kmeans_accuracy.json from all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

HERE = Path(__file__).parent
DPL_VENV = HERE / ".venv-diffprivlib"
SCENARIOS = {  # name: 20 merchants × 5,000 or 2,000 merchants × 50 customers
    "m20-a0.5": dict(merchants=20, alpha=0.5, noise="local"),
    "m20-a0.1": dict(merchants=20, alpha=0.1, noise="local"),
    "m2000-a0.5": dict(merchants=2000, alpha=0.5, noise="local"),
    "m2000-a0.5-secagg": dict(merchants=2000, alpha=0.5, noise="distributed"),
}
EPSILONS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
N, D, K, DELTA = 100_000, 10, 5, 1e-6


def _data(scenario: dict, seed: int, root: Path):
    from fedseg.simulations.data.mixture import (
        gaussian_mixture_federation,
        write_mixture_federation,
    )

    mix = gaussian_mixture_federation(n=N, d=D, k=K, merchants=scenario["merchants"],
                                      alpha=scenario["alpha"], seed=seed)  # fmt: skip
    path = root / f"{scenario['merchants']}-{scenario['alpha']}-{seed}"
    if not path.exists():
        write_mixture_federation(mix, path, fmt="parquet")
    return path, np.vstack(mix.parts), np.concatenate(mix.labels)


def _cost(x: np.ndarray, centres: np.ndarray) -> tuple[float, np.ndarray]:
    from fedseg.client.statistics import nearest_centre
    from fedseg.simulations.experiments.metrics import kmeans_cost

    return kmeans_cost(x, centres), nearest_centre(x, centres)


def _fedseg(path: Path, x, y, reference: float, eps: float, seed: int, noise: str) -> dict:
    from fedseg.simulations.experiments.runner import simulate

    config = {"k": K, "epsilon": eps, "delta": DELTA, "seed": seed, "noise": noise,
              "secure-agg": noise == "distributed"}  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        model = simulate(path, config, out_dir=out, evaluate=False).model
        wall = time.perf_counter() - started
    cost, labels = _cost(x, model.centroids)
    return {"cost_ratio": cost / reference, "ari": adjusted_rand_score(y, labels),
            "epsilon_spent": model.privacy["epsilon"], "wall_s": wall,
            "empty_clusters": int(np.sum(model.segment_sizes < 1))}  # fmt: skip


def _diffprivlib(x, y, reference: float, eps: float, seed: int) -> dict | None:
    python = DPL_VENV / "bin" / "python"
    if not python.exists() or not math.isfinite(eps):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        code = (
            "import sys, json, numpy as np, time; from diffprivlib.models import KMeans\n"
            "x = np.load(sys.argv[1]); t = time.perf_counter()\n"
            f"m = KMeans(n_clusters={K}, epsilon={eps}, bounds=(-14.0, 14.0), random_state={seed}).fit(x)\n"
            "print(json.dumps({'centres': m.cluster_centers_.tolist(), 'wall_s': time.perf_counter() - t}))"
        )
        out = subprocess.run([str(python), "-c", code, str(Path(tmp) / "x.npy")],
                             capture_output=True, text=True, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cost, labels = _cost(x, np.asarray(result["centres"]))
    return {"cost_ratio": cost / reference, "ari": adjusted_rand_score(y, labels),
            "epsilon_spent": eps, "wall_s": result["wall_s"]}  # fmt: skip


def run_point(job: tuple) -> list[dict]:
    """All methods for one (scenario, seed): shares the data and the reference."""
    name, seed, epsilons, root = job
    scenario = SCENARIOS[name]
    path, x, y = _data(scenario, seed, Path(root))
    started = time.perf_counter()
    reference_model = KMeans(n_clusters=K, n_init=10, random_state=seed).fit(x)
    sk_wall = time.perf_counter() - started
    reference = float(reference_model.inertia_)
    rows = [{"scenario": name, "method": "sklearn (non-private, pooled)", "epsilon": math.inf,
             "seed": seed, "cost_ratio": 1.0, "wall_s": sk_wall,
             "ari": adjusted_rand_score(y, reference_model.labels_)}]  # fmt: skip
    for eps in epsilons:
        row = _fedseg(path, x, y, reference, eps, seed, scenario["noise"])
        rows.append(
            {
                "scenario": name,
                "method": f"fedseg ({scenario['noise']})",
                "epsilon": eps,
                "seed": seed,
                **row,
            }
        )
        if (
            scenario["noise"] == "local"
            and scenario["merchants"] == 20
            and scenario["alpha"] == 0.5
        ):
            dpl = _diffprivlib(x, y, reference, eps, seed)
            if dpl is not None:
                rows.append(
                    {
                        "scenario": name,
                        "method": "diffprivlib (central)",
                        "epsilon": eps,
                        "seed": seed,
                        **dpl,
                    }
                )
    print(f"done: {name}, seed {seed}", file=sys.stderr, flush=True)
    return rows


PARTIAL = HERE / "results" / "kmeans_accuracy.jsonl"


def _finished() -> list[dict]:
    if not PARTIAL.exists():
        return []
    rows = [json.loads(line) for line in PARTIAL.read_text().splitlines() if line.strip()]
    for r in rows:
        r["epsilon"] = float(r["epsilon"])
    return rows


def ensure_diffprivlib() -> None:
    if not (DPL_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(DPL_VENV)], check=True)
        subprocess.run([str(DPL_VENV / "bin" / "pip"), "install", "-q", "diffprivlib==0.6.6",
                        "scikit-learn<1.9"], check=True)  # fmt: skip


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["method"], r["epsilon"]), []).append(r)
    table = []
    for (scenario, method, eps), rs in groups.items():

        def med(key: str, rs: list[dict] = rs) -> float:
            return float(np.median([r[key] for r in rs if key in r]))

        table.append({"scenario": scenario, "method": method, "epsilon": eps, "seeds": len(rs),
                      "cost_ratio": med("cost_ratio"), "ari": med("ari"),
                      "epsilon_spent_max": max(r.get("epsilon_spent", eps) for r in rs),
                      "empty_clusters": med("empty_clusters") if "empty_clusters" in rs[0] else 0.0,
                      "wall_s": med("wall_s")})  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--epsilons", default=None, help="comma-separated, inf allowed")
    args = parser.parse_args()
    seeds = 2 if args.quick else args.seeds
    epsilons = (0.25, 1.0, math.inf) if args.quick else EPSILONS
    if args.epsilons:
        epsilons = tuple(float(e) for e in args.epsilons.split(","))
    ensure_diffprivlib()
    names = [s for s in args.scenarios.split(",") if s]
    done = {(r["scenario"], r["seed"]) for r in _finished()}
    with tempfile.TemporaryDirectory() as root:
        jobs = []
        for name in names:
            eps = (1.0,) if SCENARIOS[name]["noise"] == "distributed" else epsilons
            jobs += [(name, seed, eps, root) for seed in range(seeds) if (name, seed) not in done]
        with ProcessPoolExecutor(max_workers=2) as pool, PARTIAL.open("a") as partial:
            for rows in pool.map(run_point, jobs):
                partial.writelines(json.dumps(r, default=str) + "\n" for r in rows)
                partial.flush()
    rows = _finished()
    table = summarize(rows)
    print(
        f"{'scenario':18} {'method':30} {'ε':>6} {'cost ratio':>10} {'ARI':>6} {'ε spent':>8} {'empty':>5} {'wall s':>7}"
    )
    for t in table:
        print(f"{t['scenario']:18} {t['method']:30} {t['epsilon']:>6g} {t['cost_ratio']:>10.4f} "
              f"{t['ari']:>6.3f} {t['epsilon_spent_max']:>8.4g} {t['empty_clusters']:>5.1f} {t['wall_s']:>7.2f}")  # fmt: skip
    out = HERE / "results" / "kmeans_accuracy.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"n": N, "d": D, "k": K, "delta": DELTA, "summary": table, "runs": rows},
                              indent=1, default=str))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
