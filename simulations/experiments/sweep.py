"""`fedseg sweep`: every (setting, ε, seed) point of a scenario, on both cores, resumable.

Layout of OUT::

    federations/<dataset>-seed<s>/   generated once per seed (+ pooled-*.npz for evaluation)
    runs/<point_id>/                 model.json, metrics.json, report.md of each run
    points/<point_id>.json           the finished point: config, status, metrics
    results.csv                      one row per point

A point whose ``points/`` file says ``ok`` is never recomputed; failed points are retried.
A run that raises (e.g. a setting not supported yet) becomes an ``error`` row; the sweep
goes on. Workers are spawned processes (no fork of a process holding threads), each
limited to one BLAS/OpenMP thread so two workers use exactly the two cores.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from fedseg.simulations.experiments.scenario import GridPoint, Scenario

ID_COLUMNS = ["point_id", "setting", "noise", "secure_agg", "epsilon", "seed", "status", "error"]
# The recommender's headline (full ranking, docs/recommender.md) leads the metric columns.
HEADLINE_COLUMNS = ["recommender.recall_at_20", "recommender.ndcg_at_10_full"]
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class SweepResult:
    results: pd.DataFrame
    csv_path: Path
    out_dir: Path


def run_sweep(
    scenario: Scenario,
    out_dir: str | Path,
    *,
    workers: int = DEFAULT_WORKERS,
    progress: bool = True,
) -> SweepResult:
    """Run every missing point of ``scenario.grid()`` and write ``results.csv``.

    ``workers`` processes run points in parallel (0 = inline in this process).
    """
    out = Path(out_dir)
    (out / "points").mkdir(parents=True, exist_ok=True)
    (out / "scenario.json").write_text(json.dumps(scenario.to_dict(), indent=2, default=str))
    todo = [p for p in scenario.grid() if not _finished(out, p)]
    by_seed: dict[int, list[GridPoint]] = {}
    for point in todo:
        by_seed.setdefault(point.seed, []).append(point)
    if scenario.backend == "ray":
        workers = 1  # Ray starts its own workers; two Ray sessions would fight for the cores
    done_before = len(scenario.grid()) - len(todo)
    with _Progress(len(scenario.grid()), done_before, enabled=progress) as bar:
        if by_seed:
            _execute(scenario, out, by_seed, workers, bar.advance)
    results = collect_results(out, scenario)
    csv_path = out / "results.csv"
    results.to_csv(csv_path, index=False)
    return SweepResult(results=results, csv_path=csv_path, out_dir=out)


def _execute(scenario, out: Path, by_seed, workers: int, on_point: Callable[[dict], None]) -> None:
    if workers == 0:  # inline, one point after another (debugging, tests)
        for seed, points in by_seed.items():
            data_dir = prepare_seed(scenario, seed, out)
            for point in points:
                on_point(run_point(scenario, point, data_dir, out))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        preparing = {pool.submit(prepare_seed, scenario, seed, out): seed for seed in by_seed}
        running: list[Future] = []
        for future in _as_completed(preparing):
            seed = preparing[future]
            try:
                data_dir = future.result()
            except BrokenProcessPool:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad federation fails its points only
                for point in by_seed[seed]:
                    on_point(_write_point(out, _error_record(scenario, point, exc)))
                continue
            running += [pool.submit(run_point, scenario, p, data_dir, out) for p in by_seed[seed]]
        for future in _as_completed(running):
            on_point(future.result())


def _as_completed(futures):
    from concurrent.futures import as_completed

    return as_completed(list(futures))


def prepare_seed(scenario: Scenario, seed: int, out: Path) -> Path:
    """Generate (or find) the seed's federation and its pooled evaluation data."""
    from fedseg.simulations.experiments.run_metrics import pooled_data
    from fedseg.simulations.experiments.scenario_data import prepare_federation
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        data_dir = prepare_federation(scenario, seed, out / "federations")
        pooled_data(data_dir, k=scenario.k, seed=seed, cache_dir=_cache_dir(out, scenario, seed))
    return data_dir


def run_point(scenario: Scenario, point: GridPoint, data_dir: Path, out: Path) -> dict:
    """Simulate one point and evaluate it; any failure becomes an error record."""
    from fedseg.simulations.experiments.recsys_run import HOLDOUT_KEY, recommender_evaluation
    from fedseg.simulations.experiments.run_metrics import evaluate_point, pooled_data
    from fedseg.simulations.experiments.runner import merchant_files, simulate
    from threadpoolctl import threadpool_limits

    started = time.process_time()
    run_config = scenario.run_config(point)
    if scenario.recommender:  # merchants hold out each customer's last item, to evaluate on
        run_config[HOLDOUT_KEY] = True
    try:
        with threadpool_limits(1):
            run_dir = out / "runs" / point.point_id
            result = simulate(
                data_dir, run_config, out_dir=run_dir, backend=scenario.backend, evaluate=False
            )
            pooled = pooled_data(
                data_dir,
                k=scenario.k,
                seed=point.seed,
                cache_dir=_cache_dir(out, scenario, point.seed),
            )
            metrics = {**result.metrics, **evaluate_point(result.model, pooled, seed=point.seed)}
            files = merchant_files(data_dir)
            metrics |= recommender_evaluation(
                result.model, data_dir, files, run_config, seed=point.seed
            )
            # CPU seconds of this worker for run + evaluation: comparable on a loaded machine.
            metrics["point_cpu_s"] = time.process_time() - started
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        record = _record(scenario, point, status="ok", error="", metrics=metrics)
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the sweep
        record = _error_record(scenario, point, exc)
    return _write_point(out, record)


def collect_results(out: str | Path, scenario: Scenario | None = None) -> pd.DataFrame:
    """One row per point file (only the scenario's grid when given), metrics flattened."""
    files = sorted((Path(out) / "points").glob("*.json"))
    wanted = {p.point_id for p in scenario.grid()} if scenario else None
    rows = []
    for path in files:
        record = json.loads(path.read_text())
        if wanted is not None and record["point_id"] not in wanted:
            continue
        rows.append({c: record[c] for c in ID_COLUMNS} | _flat(record.get("metrics", {})))
    frame = pd.DataFrame(rows, columns=None if rows else ID_COLUMNS)
    lead = ID_COLUMNS + [c for c in HEADLINE_COLUMNS if c in frame.columns]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    if rows:
        frame["epsilon"] = frame["epsilon"].astype(float)
        frame = frame.sort_values(["setting", "epsilon", "seed"], kind="stable")
    return frame.reset_index(drop=True)


def _flat(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics as dotted columns ("recommender.hr_at_10")."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _finished(out: Path, point: GridPoint) -> bool:
    path = out / "points" / f"{point.point_id}.json"
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except json.JSONDecodeError:
        return False


def _cache_dir(out: Path, scenario: Scenario, seed: int) -> Path:
    return out / "federations" / f"{scenario.dataset}-seed{seed}"


def _record(
    scenario: Scenario, point: GridPoint, *, status: str, error: str, metrics: dict
) -> dict:
    return {
        "point_id": point.point_id,
        "setting": point.setting.label,
        "noise": point.setting.noise,
        "secure_agg": point.setting.secure_agg,
        "epsilon": "inf" if math.isinf(point.epsilon) else point.epsilon,
        "seed": point.seed,
        "status": status,
        "error": error,
        "run_config": {k: str(v) for k, v in scenario.run_config(point).items()},
        "metrics": metrics,
    }


def _error_record(scenario: Scenario, point: GridPoint, exc: BaseException) -> dict:
    message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    return _record(scenario, point, status="error", error=message, metrics={})


def _write_point(out: Path, record: dict) -> dict:
    path = out / "points" / f"{record['point_id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default))
    tmp.replace(path)  # atomic: a killed sweep never leaves a half-written point
    return record


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class _Progress:
    """rich progress bar with ETA over the grid's points (a no-op when disabled)."""

    def __init__(self, total: int, done: int, *, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, done, enabled
        self.failed = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "sweep", total=self.total, completed=self.done, failed=0
            )
        return self

    def advance(self, record: dict) -> None:
        self.failed += record["status"] != "ok"
        if self.enabled:
            self._bar.update(self._task, advance=1, failed=self.failed)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)
