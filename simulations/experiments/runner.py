"""Run the real ServerApp and ClientApp over a federation on disk, and evaluate the result.

Backends: ``inprocess`` (``InProcessGrid``, fast and deterministic) and ``ray``
(Flower's simulation engine). Both read the merchants' files through the same
ClientApp code path a deployed merchant uses.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fedseg.client.app import app as client_app
from fedseg.client.errors import DataError
from fedseg.client.feature_cache import cached_features
from fedseg.client.features import customer_features
from fedseg.client.merchant import MERCHANT_SUFFIXES, as_of_timestamp, simulation_settings
from fedseg.privacy import releases
from fedseg.privacy.protocol.builtin import ecommerce_schema, numeric_table_schema
from fedseg.privacy.protocol.schema import FeatureSchema
from fedseg.privacy.pseudonyms import Pseudonymizer
from fedseg.privacy.secagg import save_roster, simulation_roster
from fedseg.server.app import app as server_app
from fedseg.server.model import SegmentModel
from fedseg.server.report import render_report
from fedseg.simulations.backends.tracing import TraceWriter
from fedseg.simulations.data.federation import EVENT_COLUMNS, public_parameters, table_columns
from fedseg.simulations.experiments.metrics import clustering_metrics
from fedseg.simulations.experiments.recsys_run import recommender_evaluation, recommender_settings

BACKENDS = ("inprocess", "ray")
AUTO_WORKERS_MIN = 50  # merchants from which an in-process run forks one worker per core
CLOCK_SLACK_S = 0.1  # file times come from a coarser clock than time.time() (a tick)


@dataclass(frozen=True)
class SimulationResult:
    model: SegmentModel
    metrics: dict[str, Any]
    out_dir: Path


def merchant_files(data_dir: Path) -> list[Path]:
    files = sorted(p for p in (data_dir / "merchants").glob("*") if p.suffix in MERCHANT_SUFFIXES)
    if not files:
        raise ValueError(f"{data_dir}: no merchants/*.csv, *.parquet or SQLite *.db files")
    return files


def simulate(
    data_dir: str | Path,
    run_config: dict[str, Any],
    *,
    out_dir: str | Path,
    backend: str = "inprocess",
    trace_dir: str | Path | None = None,
    evaluate: bool = True,
    state_dir: str | Path | None = None,
    workers: int | None = None,
) -> SimulationResult:
    """Fit a model over the federation in ``data_dir``; write model.json, metrics.json, report.md.

    Merchants keep their ledgers under ``state_dir``: give the same one to later runs
    (e.g. warm starts) and their spending accumulates; by default it is thrown away.
    In-process, the merchants are split over ``workers`` forked processes (default: one
    per core from AUTO_WORKERS_MIN merchants on); the model is the same either way.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    out_dir.mkdir(parents=True, exist_ok=True)
    n_merchants = len(merchant_files(data_dir))
    with tempfile.TemporaryDirectory(prefix="fedseg-state-") as scratch:
        # In one process merchants can keep throw-away ledgers in memory; Ray's workers
        # share them through files, and the evaluation reads what each merchant prepared.
        if state_dir is None and (backend == "ray" or evaluate):
            state_dir = scratch
        config = {
            **public_parameters(data_dir),
            **run_config,
            "out-dir": str(out_dir),
            "sim-data-dir": str(data_dir),
            "sim-state-dir": str(state_dir or ""),
            "sim-run-id": uuid.uuid4().hex,
            "expected-nodes": n_merchants,
        }
        config["as-of"] = as_of_timestamp(str(config.get("as-of", ""))).isoformat()
        if not config.get("features"):
            config["features"] = str(default_schema_file(data_dir, scratch))
        config.update(recommender_settings(data_dir, run_config, evaluate=evaluate))
        if _on(config.get("secure-agg")) and not config.get("secagg-roster"):
            config["secagg-roster"] = str(simulation_roster_file(data_dir, config, scratch))
        started, began = time.perf_counter(), time.time()
        if backend == "inprocess":
            from fedseg.simulations.backends.inprocess import run_inprocess

            tracer = TraceWriter(trace_dir) if trace_dir else None
            run_inprocess(
                server_app, client_app, num_nodes=n_merchants, run_config=config, on_reply=tracer,
                dropout=float(run_config.get("dropout", 0.0)),
                workers=default_workers(n_merchants) if workers is None else workers,
            )  # fmt: skip
        elif backend == "ray":
            from fedseg.simulations.backends.ray_engine import run_ray

            if trace_dir:
                raise ValueError("--trace needs the inprocess backend")
            run_ray(server_app, client_app, num_nodes=n_merchants, run_config=config)
        else:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        wall = time.perf_counter() - started
        model = SegmentModel.load(out_dir / "model.json")
        metrics = {
            "epsilon_spent": model.privacy["epsilon"],
            "delta": model.privacy["delta"],
            "n_merchants": n_merchants,
            "rounds": sum(1 for h in model.history if h.get("task") == releases.LLOYD),
            "wall_s": wall,
        }
        if evaluate:
            seed = int(config.get("seed", 0))
            metrics.update(evaluate_loaded(model, data_dir, config, since=began))
            files = merchant_files(data_dir)
            metrics.update(recommender_evaluation(model, data_dir, files, config, seed=seed))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return SimulationResult(model=model, metrics=metrics, out_dir=out_dir)


def default_workers(n_merchants: int) -> int:
    """One worker per core this process may use, once there are enough merchants to keep
    them busy (forking and pickling cost more than a few merchants' work)."""
    return len(os.sched_getaffinity(0)) if n_merchants >= AUTO_WORKERS_MIN else 1


def default_schema_file(data_dir: Path, folder: str | Path) -> Path:
    """The simulated operator's schema for a federation that names none: a features table's
    own columns (built-in names keep their definitions), or the e-commerce features (with
    category shares if the events have categories). Read from the first merchant's header:
    the simulator is every party."""
    columns = [str(c) for c in table_columns(merchant_files(data_dir)[0])]
    if set(EVENT_COLUMNS) <= set(columns):
        schema = ecommerce_schema() if "category" in columns else ecommerce_schema(())
    else:
        schema = numeric_table_schema([c for c in columns if c != "user_id"])
    path = Path(folder) / "schema.toml"
    path.write_text(schema.to_toml())
    return path


def simulation_roster_file(data_dir: Path, run_config: dict, folder: str | Path) -> Path:
    """The pinned roster of a simulated federation: every merchant file's signing key,
    derived from the seed (the merchants derive their own keys the same way)."""
    seed = max(int(run_config.get("seed", 0)), 0)
    names = [path.stem for path in merchant_files(data_dir)]
    path = Path(folder) / "roster.json"
    save_roster(path, simulation_roster(seed, names))
    return path


def _on(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def pooled_features(
    data_dir: Path, *, seed: int, as_of: str | None = None, schema: FeatureSchema | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every merchant's customer features stacked (the run's ``schema``; default: the
    merchants' own), with planted segments if truth.csv exists.

    ``as_of`` defaults to the federation's public one (federation.toml), as the merchants'."""
    as_of = as_of or public_parameters(data_dir).get("as-of") or None
    truth_path = data_dir / "truth.csv"
    truth = read_truth(truth_path) if truth_path.exists() else None
    rows, labels = [], []
    for path in merchant_files(data_dir):
        pseudonymizer = Pseudonymizer.for_simulation(path.stem, max(seed, 0))
        try:
            features, _, _ = customer_features(
                path, pseudonymizer=pseudonymizer, schema=schema, as_of=as_of
            )
        except DataError:  # an unusable merchant took no part in the run either
            continue
        rows.append(features.to_numpy(dtype=np.float64))
        if truth is not None:
            labels.append(_planted(truth, path.stem, features.index, max(seed, 0)))
    if not rows:
        raise DataError(f"{data_dir}: no merchant file could be loaded for the evaluation")
    return _stacked(rows, labels, truth_path)


TRUTH_COLUMNS = ("merchant_id", "user_id", "segment")


def read_truth(path: Path) -> pd.DataFrame:
    """truth.csv (merchant_id, user_id, segment), or one line naming the file and column."""
    try:
        truth = pd.read_csv(path, dtype={"user_id": str, "merchant_id": str})
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable truth file ({type(exc).__name__})") from None
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} (needs {', '.join(TRUTH_COLUMNS)})")
    segment = pd.to_numeric(truth["segment"], errors="coerce")
    bad = np.flatnonzero(segment.isna().to_numpy())
    if len(bad):
        raise DataError(f"{path}: row {bad[0] + 1}: column 'segment' is not a number")
    return truth.assign(segment=segment)


def loaded_features(
    data_dir: Path, run_config: dict[str, Any], schema: FeatureSchema | None, *, since: float
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The features every merchant of a simulation started at ``since`` (time.time())
    prepared for it, as its node used them (read from its state directory under
    ``sim-state-dir``; the files are not read again), stacked, with planted segments if
    truth.csv exists, and the merchants evaluated. A merchant whose table did not load, or
    that never received a request (a dropped ``describe``), took no part and is left out;
    so is an entry an earlier run left in a kept state directory."""
    truth_path = data_dir / "truth.csv"
    truth = read_truth(truth_path) if truth_path.exists() else None
    rows, labels, names = [], [], []
    for partition, path in enumerate(merchant_files(data_dir)):
        settings = simulation_settings(partition, run_config)
        prepared = cached_features(settings, schema, since=since - CLOCK_SLACK_S)
        if prepared is None:
            continue
        rows.append(prepared.matrix)
        names.append(path.stem)
        if truth is not None:
            labels.append(
                _planted(truth, path.stem, prepared.customer_ids, settings.simulation_seed)
            )
    if not rows:
        raise DataError(f"{data_dir}: no merchant prepared features for the evaluation")
    return (*_stacked(rows, labels, truth_path), names)


def _planted(truth: pd.DataFrame, merchant: str, customer_ids, seed: int) -> np.ndarray:
    """The planted segment of each of a merchant's customers (NaN: not in truth.csv)."""
    mine = truth[truth["merchant_id"] == merchant]
    pseudonymizer = Pseudonymizer.for_simulation(merchant, seed)
    segment = dict(zip(pseudonymizer.pseudonymize(mine["user_id"]), mine["segment"], strict=True))
    return pd.Index(list(customer_ids)).map(segment).to_numpy(dtype=np.float64, na_value=np.nan)


def _stacked(rows: list, labels: list, truth_path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.vstack(rows)
    y = np.concatenate(labels) if labels else None
    if y is not None and np.isnan(y).all():
        raise DataError(f"{truth_path}: lists none of the federation's {len(x):,} customers")
    return x, y


def evaluate_loaded(
    model: SegmentModel, data_dir: Path, run_config: dict[str, Any], *, since: float
) -> dict:
    """``evaluate_model`` on what the merchants of the run started at ``since`` loaded,
    with how many merchants that was."""
    x, truth, names = loaded_features(data_dir, run_config, model.schema, since=since)
    metrics = _evaluation(model, x, truth, seed=int(run_config.get("seed", 0)))
    return {**metrics, "n_merchants_evaluated": len(names)}


def evaluate_model(
    model: SegmentModel, data_dir: Path, *, seed: int, as_of: str | None = None
) -> dict[str, Any]:
    """The model's clustering metrics on the federation's files, read again."""
    x, truth = pooled_features(data_dir, seed=seed, as_of=as_of, schema=model.schema)
    return _evaluation(model, x, truth, seed=seed)


def _evaluation(
    model: SegmentModel, x: np.ndarray, truth: np.ndarray | None, *, seed: int
) -> dict[str, Any]:
    z = model.scaling.transform(x)
    metrics = clustering_metrics(
        x,
        model.centroids,
        k=model.k,
        truth=truth,
        seed=max(seed, 0),
        model_space=(z, model.centres_standardized),
    )
    metrics["n_users"] = int(len(x))
    metrics["empty_clusters"] = int(np.sum(model.segment_sizes < 1))
    return metrics


def write_report(result: SimulationResult) -> str:
    text = render_report(result.model)
    (result.out_dir / "report.md").write_text(text)
    return text
