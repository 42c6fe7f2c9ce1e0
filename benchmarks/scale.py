"""How far one machine goes: in-process simulations with many merchants or many customers.

Cases (merchants × customers each, d=8 Gaussian mixture, k=5, ε=1, up to 10 DP Lloyd rounds):
10,000 × 100 (many small merchants) and 100 × 10,000 (1M customers), plus a 1,000 × 100
warm-up. Each row: time to write the federation, time of the simulation (every message
through the real ServerApp/ClientApp and the in-process Grid), messages, µs per message,
and the same data clustered by scikit-learn KMeans(n_init=1) in one process as the
baseline (ratio = simulation ÷ sklearn). The floor is the same number of messages through
the same in-process Grid (same workers), transport and codec, each merchant decoding the
request and echoing a reply of a Lloyd round's shape, with no merchant or server work: what
the messages alone cost on this machine (``ratio_vs_floor`` = simulation ÷ floor).
``--profile`` adds the top functions by cumulative time (cProfile) for the largest case.

    python benchmarks/scale.py [--quick] [--profile] [--cases 10000x100] [--rounds 10]
                               [--baseline main --repeat 2] [--out results/scale.json]

With ``--baseline REF`` each case also runs with fedseg as of git REF, interleaved, and the
row of this tree gives its time ÷ the baseline's (models compared by digest).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
from baseline import baseline_path, cpu_time, peak_rss_mb, run_child
from fedseg.simulations.data.mixture import gaussian_mixture_federation, write_mixture_federation
from fedseg.simulations.experiments.runner import simulate
from sklearn.cluster import KMeans

CASES = ((1_000, 100), (10_000, 100), (100, 10_000))
QUICK_CASES = ((200, 100), (20, 5_000))
DIMS, K, ROUNDS, EPSILON = 8, 5, 10, 1.0
RESULTS = Path(__file__).parent / "results" / "scale.json"


def run_case(
    merchants: int,
    per_merchant: int,
    *,
    profile: bool,
    baseline: Path | None,
    repeat: int,
    rounds: int = ROUNDS,
) -> list[dict]:
    """Rows for this case: this tree (and, with ``baseline``, the earlier one), each
    simulation in its own process, interleaved ``repeat`` times; the best run of each."""
    mixture = gaussian_mixture_federation(
        n=merchants * per_merchant, d=DIMS, k=K, merchants=merchants, alpha=1.0, seed=0
    )
    with tempfile.TemporaryDirectory(prefix="fedseg-scale-") as scratch:
        started = time.perf_counter()
        data_dir = write_mixture_federation(mixture, Path(scratch) / "fed", fmt="parquet")
        write_s = time.perf_counter() - started
        x = np.vstack(mixture.parts)
        del mixture
        started = time.perf_counter()
        KMeans(n_clusters=K, n_init=1, random_state=0).fit(x)
        sklearn_s = time.perf_counter() - started
        del x
        floor = json.loads(run_child([__file__, "--floor", str(merchants), str(rounds)],
                                     pythonpath=None).strip().splitlines()[-1])  # fmt: skip
        trees = {"this tree": None, **({"baseline": baseline} if baseline else {})}
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(repeat):
            for name, path in trees.items():
                args = [__file__, "--child", str(data_dir), "--rounds", str(rounds),
                        *(["--profile"] if profile else [])]  # fmt: skip
                out = run_child(args, pythonpath=path)
                runs[name].append(json.loads(out.strip().splitlines()[-1]))
    rows = []
    for name, results in runs.items():
        best = min(results, key=lambda r: r["simulate_s"])
        floor_s = floor["floor_s"] * best["messages"] / floor["messages"]  # the same count
        rows.append({
            "tree": name, "merchants": merchants, "customers": merchants * per_merchant,
            "write_s": write_s, **best, "us_per_message": 1e6 * best["simulate_s"] / best["messages"],
            "sklearn_s": sklearn_s, "ratio_vs_sklearn": best["simulate_s"] / sklearn_s,
            "floor_s": floor_s, "ratio_vs_floor": best["simulate_s"] / floor_s,
            "all_simulate_s": [r["simulate_s"] for r in results],
        })  # fmt: skip
    if baseline:
        rows[0]["vs_baseline"] = rows[0]["simulate_s"] / rows[1]["simulate_s"]
    return rows


def child(data_dir: str, *, profile: bool, rounds: int = ROUNDS) -> None:
    """One simulation of ``data_dir`` with whichever fedseg this process imports."""
    import fedseg.client.app  # noqa: F401 - imports before the clock, as for scikit-learn
    import fedseg.server.app  # noqa: F401

    config = {"k": K, "epsilon": EPSILON, "rounds": rounds, "seed": 0, "as-of": "2026-01-01"}
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory(prefix="fedseg-scale-out-") as out:
        started, cpu_started = time.perf_counter(), cpu_time()
        if profiler:
            profiler.enable()
        result = simulate(data_dir, config, out_dir=out, evaluate=False)
        if profiler:
            profiler.disable()
        row = {"simulate_s": time.perf_counter() - started,
               "simulate_cpu_s": cpu_time() - cpu_started}  # fmt: skip
        model_bytes = (Path(out) / "model.json").read_bytes()
    history = result.model.history
    row.update({
        "rounds": result.metrics["rounds"],
        "messages": sum(h.get("asked", 0) for h in history) + len(history and history[0].get("contributors", [])),
        **dict(zip(("peak_rss_mb", "worker_peak_rss_mb"), peak_rss_mb(), strict=True)),
        "model_sha256": hashlib.sha256(_without_timings(model_bytes)).hexdigest(),
    })  # fmt: skip
    if profiler:
        row["profile_top"] = _top(profiler)
    print(json.dumps(row))


def floor_child(merchants: int, rounds: int) -> None:
    """The messages alone: ``rounds`` + 7 requests to every merchant (a run's count: describe,
    plan, ranges, moments, two init rounds, profiles), each decoded by its ClientApp and
    answered with a Lloyd round's reply, decoded by the server's transport."""
    from fedseg.privacy.protocol.records import from_records, to_records
    from fedseg.server.app import GridTransport
    from fedseg.server.lloyd import DISTANCE_BINS
    from fedseg.simulations.backends.inprocess import run_inprocess
    from fedseg.simulations.experiments.runner import default_workers
    from flwr.app import Message
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    client, server, row = ClientApp(), ServerApp(), {}
    reply = {
        "sums": np.zeros((K, DIMS)),
        "counts": np.zeros(K),
        "distances": np.zeros(DISTANCE_BINS),
    }

    @client.train("cluster_displacements")
    def echo(message, context):
        request_id = from_records(message.content)["request_id"]
        return Message(to_records({**reply, "request_id": request_id}), reply_to=message)

    @server.main()
    def main(grid, context):
        transport = GridTransport(grid, timeout=None)
        nodes = transport.node_ids()
        request = {"centres": np.zeros((K, DIMS)), "radius": 1.0, "release": "echo",
                   "distance_edges": np.arange(DISTANCE_BINS + 1.0),
                   **{name: np.zeros(DIMS) for name in ("lower", "upper", "mean", "scale")}}  # fmt: skip
        started = time.perf_counter()
        for request_id in range(rounds + 7):
            replies = transport.request(
                "cluster_displacements", {**request, "request_id": request_id}, nodes
            )
            assert len(replies) == len(nodes) and replies[0].error is None, replies[0]
        row.update(floor_s=time.perf_counter() - started, messages=len(nodes) * (rounds + 7))

    run_inprocess(
        server, client, num_nodes=merchants, run_config={}, workers=default_workers(merchants)
    )
    print(json.dumps(row))


_NOT_THE_MODEL = ("seconds", "run_id", "created")


def _without_timings(model_json: bytes) -> bytes:
    """model.json less its wall-clock fields and its run's identity (the simulator's random
    run id, the time it was made): equal digests mean the same model."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _NOT_THE_MODEL}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return json.dumps(strip(json.loads(model_json)), sort_keys=True).encode()


def _top(profiler: cProfile.Profile, n: int = 25) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(n)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases only (CI smoke run)")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest case")
    parser.add_argument("--cases", help="e.g. 1000x100,100x10000 (merchants x customers each)")
    parser.add_argument("--baseline", help="git ref to time in the same job (e.g. main)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of each tree")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="at most this many Lloyd rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        return floor_child(*args.floor)
    if args.child:
        return child(args.child, profile=args.profile, rounds=args.rounds)
    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        cases = tuple(tuple(int(v) for v in c.split("x")) for c in args.cases.split(","))
    baseline = baseline_path(args.baseline) if args.baseline else None
    rows = []
    for merchants, per_merchant in cases:
        profile = args.profile and merchants == max(c[0] for c in cases)  # many merchants
        for row in run_case(merchants, per_merchant, profile=profile, baseline=baseline,
                            repeat=args.repeat, rounds=args.rounds):  # fmt: skip
            rows.append(row)
            _print_row(row, header=len(rows) == 1)
    for row in rows:
        if "profile_top" in row:
            print(row["profile_top"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cases": rows, "dims": DIMS, "k": K, "epsilon": EPSILON,
                                    "rounds": args.rounds, "baseline": args.baseline}, indent=2))  # fmt: skip
    print(f"wrote {args.out}")


def _print_row(row: dict, *, header: bool) -> None:
    columns = ("tree", "merchants", "customers", "rounds", "simulate_s", "simulate_cpu_s",
               "messages", "us_per_message", "peak_rss_mb", "ratio_vs_sklearn", "floor_s",
               "ratio_vs_floor", "model_sha256")  # fmt: skip
    if header:
        print(" | ".join(f"{c:>14}" for c in columns))
    print(
        " | ".join(
            f"{row[c]:>14,.3f}"
            if isinstance(row[c], float)
            else f"{row[c][:12]:>14}"
            if isinstance(row[c], str)
            else f"{row[c]:>14,}"
            for c in columns
        )
    )


if __name__ == "__main__":
    main()
