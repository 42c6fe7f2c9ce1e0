"""Issue 16's accuracy targets in the research harness, with baselines in the same run.

Per scenario and seed, side by side on the same data: fedseg through the real Flower apps
on the in-process Grid (each merchant's part written as a features table with the
scenario's schema in federation.toml), the fit before issue 16 replayed over the same
releases (``simulations/harness/legacy.py``) and diffprivlib's KMeans (central DP, given
the true per-feature bounds). Cost ratio = k-means cost ÷ scikit-learn KMeans(n_init=10), both in
the space the schema defines (``simulations/harness/evaluate.py``); beside it ARI against
planted segments where they exist and the share of customers whose segment differs from the
non-private fit.

Needs diffprivlib beside fedseg: ``pip install --no-deps diffprivlib==0.6.6`` (its
dependencies are fedseg's already), then delete the top-level ``tests`` package its wheel
puts in site-packages, which would shadow fedseg's own tests.

    python benchmarks/accuracy_targets.py                      # every scenario, 5 seeds
    python benchmarks/accuracy_targets.py --scenarios mix-m20 --seeds 2

Prints a table of medians and writes benchmarks/results/accuracy_targets.json (each
finished scenario and seed is kept in accuracy_targets.jsonl first, so a re-run resumes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
INF = math.inf
# name: (data builder, [(ε, noise)], what the issue asks for)
SCENARIOS: dict[str, tuple] = {
    "tables-wine": ("sklearn_table", {"name": "wine"}, [(8.0, "local")], "cost ≤ 1.20"),
    "tables-breast_cancer": ("sklearn_table", {"name": "breast_cancer"}, [(8.0, "local")], "cost ≤ 1.20"),
    "tables-iris": ("sklearn_table", {"name": "iris"}, [(8.0, "local")], "cost ≤ 1.20"),
    "tables-digits": ("sklearn_table", {"name": "digits"}, [(8.0, "local")], "cost ≤ 1.20"),
    "events-3x1000": ("synthetic_events", {"users": 3000, "merchants": 3}, [(2.0, "local")], "ARI ≥ 0.85"),
    "feddp-2000x50": ("mixture", {"n": 100_000, "d": 100, "k": 10, "merchants": 2000, "alpha": 0.5},
                      [(1.0, "distributed")], "cost ≤ 1.05"),
    "mix-m20": ("mixture", {"n": 100_000, "d": 10, "k": 5, "merchants": 20, "alpha": 0.5},
                [(1.0, "local"), (0.25, "local"), (0.1, "local"), (0.1, "distributed")],
                "ε=1: ≤ 1.010; 0.25: ≤ 1.05; 0.1: ≤ 1.50 local, ≤ 1.05 distributed"),
    "google-100": ("google_synthetic", {"merchants": 100}, [(1.0, "distributed"), (1.0, "local")],
                   "cost ≤ 1.30"),
    "cdnow-k5": ("cdnow", {}, [(1.0, "local")], "cost ≤ 1.10"),
    "builtin-20k": ("synthetic_events", {"users": 20_000, "merchants": 10},
                    [(1.0, "local"), (0.5, "local")], "ARI ≥ 0.95 / ≥ 0.90"),
}  # fmt: skip
DELTA = 1e-6


def _data(builder: str, kwargs: dict, seed: int):
    from fedseg.simulations.harness import data

    if builder == "cdnow":
        return data.cdnow(**kwargs)
    return getattr(data, builder)(**kwargs, seed=seed)


def _write_federation(hd, root: Path) -> Path:
    """The scenario as a features-kind federation on disk, its schema named in federation.toml."""
    import pandas as pd

    merchants = root / "merchants"
    merchants.mkdir(parents=True)
    for m, part in enumerate(hd.parts):
        table = pd.DataFrame(part, columns=list(hd.schema.names))
        table.insert(0, "user_id", [f"m{m}-u{i}" for i in range(len(part))])
        table.to_parquet(merchants / f"merchant_{m:04d}.parquet", index=False)
    (root / "schema.toml").write_text(hd.schema.to_toml())
    (root / "federation.toml").write_text('features = "schema.toml"\n')
    return root


def _apps(hd, eps: float, noise: str, seed: int) -> dict:
    """fedseg's ServerApp and ClientApps on the in-process Grid (the code merchants run)."""
    from fedseg.simulations.experiments.runner import simulate

    config = {"k": hd.k, "epsilon": eps, "delta": DELTA, "seed": seed, "noise": noise,
              "secure-agg": noise == "distributed"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fedseg-acc-") as tmp:
        path = _write_federation(hd, Path(tmp) / "federation")
        started = time.perf_counter()
        model = simulate(path, config, out_dir=Path(tmp) / "out", evaluate=False).model
        wall = time.perf_counter() - started
    scaling, centres = model.scaling, model.centres_standardized
    rounds = sum(1 for h in model.history if h.get("task") == "cluster_displacements")
    return {"scaling": scaling, "centres": centres, "wall_s": wall, "rounds": rounds,
            "epsilon_spent": model.privacy["epsilon"] if math.isfinite(eps) else INF,
            "releases": sum(r["count"] for r in model.privacy["releases"])}  # fmt: skip


def _legacy(hd, eps: float, noise: str, seed: int) -> dict:
    from fedseg.simulations.harness import legacy
    from fedseg.simulations.harness.channel import Channel

    rng = np.random.default_rng([seed, 16])
    channel = Channel(hd.parts, noise, rng)
    started = time.perf_counter()
    out = legacy.legacy_fit(channel, hd.schema, k=hd.k, epsilon=eps, delta=DELTA, rng=rng)
    return {"scaling": out["scaling"], "centres": out["centres"],
            "wall_s": time.perf_counter() - started,
            "epsilon_spent": channel.epsilon(DELTA) if math.isfinite(eps) else INF,
            "rounds": sum(1 for r in channel.releases if "cluster" in r.name),
            "releases": len(channel.releases)}  # fmt: skip


def _fit(method: str, hd, eps: float, noise: str, seed: int) -> dict:
    from fedseg.privacy.published.segments import nearest_centre

    out = (_apps if method == "fedseg" else _legacy)(hd, eps, noise, seed)
    scaling, centres = out.pop("scaling"), out.pop("centres")
    labels = nearest_centre(scaling.transform(hd.pooled), centres)
    model_space = centres * np.asarray(scaling.scale) + np.asarray(scaling.mean)
    return {"model_space": model_space, "labels": labels, **out}


def run_point(job: tuple) -> list[dict]:
    from fedseg.simulations.harness.baselines import diffprivlib_score
    from fedseg.simulations.harness.evaluate import Reference, score

    name, seed = job
    builder, kwargs, settings, _ = SCENARIOS[name]
    hd = _data(builder, kwargs, seed)
    ref = Reference.fit(hd.pooled, hd.schema, hd.k, seed=seed)
    rows = []
    for eps, noise in settings:
        for method in ("fedseg", "before"):
            try:
                fit = _fit(method, hd, eps, noise, seed)
                metrics = score(ref, fit["model_space"], fit["labels"], truth=hd.truth)
                metrics.update(
                    {k: fit[k] for k in ("wall_s", "epsilon_spent", "rounds", "releases")}
                )
            except Exception as exc:  # a failed fit is a result too
                metrics = {"cost_ratio": INF, "error": f"{type(exc).__name__}: {exc}"}
            rows.append({"scenario": name, "method": f"{method} ({noise})", "epsilon": eps,
                         "seed": seed, **metrics})  # fmt: skip
        dpl = diffprivlib_score(ref, hd.k, eps, seed=seed, truth=hd.truth)
        if dpl is not None and noise == settings[0][1]:
            rows.append({"scenario": name, "method": "diffprivlib (central)", "epsilon": eps,
                         "seed": seed, **dpl})  # fmt: skip
    print(f"done: {name} seed {seed}", file=sys.stderr, flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["method"], r["epsilon"]), []).append(r)
    table = []
    for (scenario, method, eps), rs in groups.items():

        def med(key: str, rs=rs) -> float:
            values = [r[key] for r in rs if key in r]
            return float(np.median(values)) if values else float("nan")

        table.append({"scenario": scenario, "method": method, "epsilon": eps, "seeds": len(rs),
                      "cost_ratio": med("cost_ratio"), "ari": med("ari"),
                      "disagreement": med("disagreement"), "rounds": med("rounds"),
                      "epsilon_spent_max": max(r.get("epsilon_spent", eps) for r in rs),
                      "wall_s": med("wall_s"), "target": SCENARIOS[scenario][3]})  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "accuracy_targets.json"))
    args = parser.parse_args()
    names = [s for s in args.scenarios.split(",") if s]
    # Each finished (scenario, seed) is appended to a .jsonl beside --out; a re-run skips
    # those already there (delete the file to start over).
    done_file = Path(args.out).with_suffix(".jsonl")
    rows = (
        [json.loads(line) for line in done_file.read_text().splitlines()]
        if done_file.exists()
        else []
    )
    done = {(r["scenario"], r["seed"]) for r in rows}
    jobs = [(n, seed) for n in names for seed in range(args.seeds) if (n, seed) not in done]
    with ProcessPoolExecutor(max_workers=args.workers) as pool, done_file.open("a") as log:
        for batch in pool.map(run_point, jobs):
            log.writelines(json.dumps(r, default=str) + "\n" for r in batch)
            log.flush()
            rows += batch
    rows = [r for r in rows if r["scenario"] in names]
    table = summarize(rows)
    print(f"{'scenario':22} {'method':26} {'ε':>5} {'cost ratio':>10} {'ARI':>6} {'differs':>7} "
          f"{'rounds':>6} {'ε spent':>7} {'s':>6}")  # fmt: skip
    for t in sorted(table, key=lambda t: (t["scenario"], -t["epsilon"], t["method"])):
        print(f"{t['scenario']:22} {t['method']:26} {t['epsilon']:>5g} {t['cost_ratio']:>10.4g} "
              f"{t['ari']:>6.3f} {t['disagreement']:>7.3f} {t['rounds']:>6.0f} "
              f"{t['epsilon_spent_max']:>7.4g} {t['wall_s']:>6.2f}")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"delta": DELTA, "summary": table, "runs": rows}, indent=1, default=str)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
