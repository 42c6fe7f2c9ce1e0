"""How fast do events become customer features? Vectorized fedseg vs pandas baselines.

Generates N synthetic events in memory (vectorized numpy, shaped like a loaded table:
pseudonymized categorical ``user_id``, UTC timestamps, categorical ``event``), then times

* ``build_features`` with the default specs (the code under test), and with extras;
* a straightforward pandas ``groupby``/``crosstab`` implementation of the same features
  (on the first ``--pandas-events`` events; it is slow) and checks that both agree;
* a per-customer Python loop over ``groupby`` groups, on a small subsample.

Speeds are compared as events per second (ratios), since the baselines see fewer events.

Prints a table and writes ``benchmarks/results/features_speed.json``.

    python benchmarks/features_speed.py                 # 10M events, 1M customers
    python benchmarks/features_speed.py --events 1e6    # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fedseg.client.features import build_features
from fedseg.privacy.protocol.builtin import ECOMMERCE_CATEGORIES as DEFAULT_CATEGORIES
from fedseg.privacy.protocol.builtin import ecommerce_schema, known_feature
from fedseg.privacy.pseudonyms import Pseudonymizer

RESULTS = Path(__file__).parent / "results" / "features_speed.json"
EVENT_MIX = {"view": 0.80, "cart": 0.10, "purchase": 0.07, "review": 0.03}
DAY_NS = 86_400 * 10**9


def synthetic_events(n_events: int, n_users: int, rng: np.random.Generator) -> pd.DataFrame:
    """Events as ``load_merchant_table`` returns them, drawn with vectorized numpy."""
    ids = Pseudonymizer.for_simulation("benchmark", 0).pseudonymize(map(str, range(n_users)))
    activity = rng.pareto(1.5, n_users) + 1.0  # heavy-tailed customer activity
    users = rng.choice(n_users, size=n_events, p=activity / activity.sum()).astype(np.int32)
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    times = start + rng.integers(0, 365 * DAY_NS, n_events)
    kinds = rng.choice(len(EVENT_MIX), size=n_events, p=list(EVENT_MIX.values())).astype(np.int8)
    categories = (*DEFAULT_CATEGORIES, "toys")
    return pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(users, categories=pd.Index(ids, dtype="str")),
            "timestamp": pd.DatetimeIndex(times.astype("datetime64[ns]")).tz_localize("UTC"),
            "event": pd.Categorical.from_codes(kinds, categories=list(EVENT_MIX)),
            "item_id": pd.Categorical.from_codes(
                rng.integers(0, 10_000, n_events), categories=[f"i{i}" for i in range(10_000)]
            ),
            "price": np.round(rng.lognormal(3.0, 1.0, n_events), 2),
            "quantity": (1 + rng.poisson(0.3, n_events)).astype(np.float64),
            "duration_s": np.round(rng.exponential(45.0, n_events), 1),
            "category": pd.Categorical.from_codes(
                rng.integers(0, len(categories), n_events).astype(np.int8), categories=categories
            ),
        }
    )


def pandas_groupby_features(events: pd.DataFrame, categories: tuple[str, ...]) -> pd.DataFrame:
    """The same default features, written the way a pandas user typically would."""
    view = events["event"] == "view"
    purchase = events["event"] == "purchase"
    df = events.assign(
        browse=np.where(view, events["duration_s"], 0.0) / 60,
        is_view=view,
        is_review=events["event"] == "review",
        amount=np.where(purchase, events["price"] * events["quantity"], 0.0),
    )
    table = df.groupby("user_id", observed=True, sort=False).agg(
        browse_minutes=("browse", "sum"),
        pages_viewed=("is_view", "sum"),
        reviews=("is_review", "sum"),
        spend=("amount", "sum"),
        first=("timestamp", "min"),
        last=("timestamp", "max"),
    )
    bought = df[purchase].groupby("user_id", observed=True)["timestamp"]
    table["orders"] = bought.nunique().reindex(table.index, fill_value=0)
    last_buy = bought.max().reindex(table.index)
    as_of = events["timestamp"].max()
    table["avg_order_value"] = (table["spend"] / table["orders"]).fillna(0.0)
    table["recency_days"] = ((as_of - last_buy).dt.total_seconds() / 86_400).fillna(730.0)
    table["tenure_days"] = (table["last"] - table["first"]).dt.total_seconds() / 86_400
    shares = pd.crosstab(events["user_id"], events["category"], normalize="index")
    for c in categories:
        table[f"share_{c}"] = shares[c].reindex(table.index) if c in shares else 0.0
    names = list(ecommerce_schema(categories).names)
    return table[names].astype(np.float64)


def python_loop_features(events: pd.DataFrame) -> pd.DataFrame:
    """Per-customer Python loop over groups (the pattern to avoid); a few features only."""
    as_of = events["timestamp"].max()
    rows = {}
    for user, mine in events.groupby("user_id", observed=True, sort=False):
        buys = mine[mine["event"] == "purchase"]
        spend = float((buys["price"] * buys["quantity"]).sum())
        rows[user] = {
            "spend": spend,
            "orders": buys["timestamp"].nunique(),
            "recency_days": (as_of - buys["timestamp"].max()).total_seconds() / 86_400
            if len(buys)
            else 730.0,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def head(events: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` events, for baselines too slow to run on all of them."""
    sample = events.iloc[:n].copy()
    sample["user_id"] = sample["user_id"].cat.remove_unused_categories()
    return sample


def timed(function, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=float, default=10e6)
    parser.add_argument("--users", type=float, default=1e6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pandas-events", type=float, default=2e6)
    parser.add_argument("--loop-events", type=float, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_events, n_users = int(args.events), int(args.users)
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    events = synthetic_events(n_events, n_users, rng)
    generate_s = time.perf_counter() - start
    extras = ecommerce_schema().features + tuple(
        known_feature(n) for n in ("sessions", "last_event_days", "purchases", "carts")
    )

    rows = []
    fast_s, fast = timed(lambda: build_features(events), args.repeats)
    rows.append(("fedseg build_features (default schema)", n_events, fast_s))
    extra_s, _ = timed(lambda: build_features(events, features=extras), args.repeats)
    rows.append(("fedseg build_features (+ sessions, extras)", n_events, extra_s))
    sample = head(events, int(args.pandas_events))
    pandas_s, baseline = timed(lambda: pandas_groupby_features(sample, DEFAULT_CATEGORIES), 1)
    rows.append(("pandas groupby/crosstab", len(sample), pandas_s))
    check = build_features(sample)
    gap = float(np.max(np.abs(check.to_numpy() - baseline.loc[check.index].to_numpy())))
    sample = head(events, int(args.loop_events))
    loop_s, _ = timed(lambda: python_loop_features(sample), 1)
    rows.append(("python loop per customer (3 features)", len(sample), loop_s))

    report(rows, fast_s, n_events, n_users, generate_s, gap, len(fast))


def report(rows, fast_s, n_events, n_users, generate_s, gap, n_customers) -> None:
    fast_rate = n_events / fast_s
    print(f"{n_events:,} events, {n_customers:,} customers (generated in {generate_s:.1f} s)")
    print(f"{'method':44} {'events':>12} {'seconds':>9} {'events/s':>12} {'slower':>8}")
    table = []
    for name, n, seconds in rows:
        rate = n / seconds
        table.append(
            {"method": name, "events": n, "seconds": seconds, "events_per_s": rate,
             "slowdown_vs_fedseg": fast_rate / rate}
        )  # fmt: skip
        print(f"{name:44} {n:>12,} {seconds:>9.2f} {rate:>12,.0f} {fast_rate / rate:>7.1f}x")
    print(f"max |fedseg - pandas| over all default features: {gap:.3g}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "n_events": n_events,
        "n_users_drawn": n_users,
        "n_customers": n_customers,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "max_abs_difference_vs_pandas": gap,
        "rows": table,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
