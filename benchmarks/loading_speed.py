"""How fast does a merchant's table load? ``load_merchant_table`` on each source format.

Writes synthetic merchant files to a temporary directory (events as CSV text, typed
Parquet and SQLite; small feature tables as many Parquet files, the shape of a large
simulation), then times reading, parsing, validating and pseudonymizing them. Speeds are
rows per second of the best of ``--repeats`` runs.

Prints a table and writes ``benchmarks/results/loading_speed.json``.

    python benchmarks/loading_speed.py                  # 1M events per format
    python benchmarks/loading_speed.py --events 1e5     # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.client.loading import load_merchant_table
from fedseg.privacy.pseudonyms import Pseudonymizer

RESULTS = Path(__file__).parent / "results" / "loading_speed.json"
PSEUDONYMIZER = Pseudonymizer.for_simulation("benchmark", 0)
EVENT_NAMES = np.array(["view", "cart", "purchase", "review"])


def synthetic_events(n_events: int, n_users: int, rng: np.random.Generator) -> pd.DataFrame:
    """A merchant's raw events, with a little dirt: 0.1% unknown events, some duplicates."""
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    kinds = rng.choice(4, size=n_events, p=[0.8, 0.1, 0.07, 0.03])
    names = EVENT_NAMES[kinds].astype(object)
    names[rng.random(n_events) < 0.001] = "refund"
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, n_users, n_events).astype(str),
            "timestamp": pd.to_datetime(start + rng.integers(0, 365 * 86_400 * 10**9, n_events)),
            "event": names,
            "item_id": np.char.add("i", rng.integers(0, 10_000, n_events).astype(str)),
            "price": np.round(rng.lognormal(3.0, 1.0, n_events), 2),
            "quantity": np.where(kinds == 2, 1 + rng.poisson(0.3, n_events), np.nan),
            "duration_s": np.where(
                kinds == 0, np.round(rng.exponential(45.0, n_events), 1), np.nan
            ),
            "category": rng.choice(["home", "fashion", "electronics", "beauty"], n_events),
            "email": "someone@example.com",
        }
    )


def write_sources(folder: Path, n_events: int, n_small: int, rng) -> dict[str, list[str]]:
    events = synthetic_events(n_events, max(n_events // 10, 1), rng)
    events.to_csv(folder / "events.csv", index=False)
    events.to_parquet(folder / "events.parquet", index=False)
    with sqlite3.connect(folder / "events.db") as connection:
        events.iloc[: n_events // 5].to_sql("events", connection, index=False)
    connection.close()
    small = []
    for m in range(n_small):
        table = pd.DataFrame(rng.normal(size=(100, 8)), columns=[f"f{j}" for j in range(8)])
        table.insert(0, "user_id", [f"cust-{m}-{i}" for i in range(100)])
        path = folder / f"m{m:04d}.parquet"
        table.to_parquet(path, index=False)
        small.append(str(path))
    small_csv = []
    for m in range(n_small):
        path = folder / f"e{m:04d}.csv"
        events.iloc[m * 200 : (m + 1) * 200].to_csv(path, index=False)
        small_csv.append(str(path))
    return {
        "events, CSV": [str(folder / "events.csv")],
        "events, typed Parquet": [str(folder / "events.parquet")],
        "events, SQLite (1/5 of the rows)": [f"sqlite:///{folder / 'events.db'}?table=events"],
        f"features, {n_small} Parquet files x 100 rows": small,
        f"events, {n_small} CSV files x 200 rows": small_csv,
    }


def timed(sources: list[str], repeats: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        rows = sum(
            load_merchant_table(s, pseudonymizer=PSEUDONYMIZER)[1].rows_read for s in sources
        )
        best = min(best, time.perf_counter() - start)
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=1e6)
    parser.add_argument("--small-files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    table = []
    with tempfile.TemporaryDirectory(prefix="fedseg-loading-") as scratch:
        cases = write_sources(Path(scratch), int(args.events), args.small_files, rng)
        print(f"{'source':44} {'rows':>10} {'seconds':>9} {'rows/s':>12}")
        for name, sources in cases.items():
            seconds, rows = timed(sources, args.repeats)
            table.append(
                {"source": name, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}
            )
            print(f"{name:44} {rows:>10,} {seconds:>9.3f} {rows / seconds:>12,.0f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "n_events": int(args.events),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": table,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
