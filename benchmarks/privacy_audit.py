"""Privacy audit of the real release path, for every kind of release a merchant makes.

A real run of the shipped apps is recorded; for each release kind its first request is
answered many times by the merchant's own node (client/node.py, the path every reply takes)
on a real events table D and on D plus one extreme customer (simulations/data/neighbours.py),
with the release calibrated to ε = 1 on its own. privacy/audit.py turns the replies into
lower bounds on ε (Clopper–Pearson, and the Gaussian trade-off bound), which must stay below
the claim. Prints a table and writes JSON.

    python benchmarks/privacy_audit.py [--trials 20000] [--slow-trials 2000]
                                       [--kinds lifetime_histograms,lifetime_sums]
                                       [--out benchmarks/results/privacy_audit.json]

``--slow-trials`` applies to the content check, whose every answer ranks each customer's
held-back item (about 0.15 s per answer).

DP-SGD (noise inside opacus's training steps) is audited by its own tests instead
(tests/test_recommender_dpsgd.py: per-customer clipping, accountant = opacus's).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from fedseg.client.merchant import MerchantSettings, build_node
from fedseg.client.plan import AcceptedPlan
from fedseg.client.policy import MerchantPolicy
from fedseg.privacy import releases
from fedseg.privacy.accounting import PlannedRelease, Release, calibrate
from fedseg.privacy.audit import audit
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.plan import RunPlan
from fedseg.privacy.protocol.builtin import ecommerce_schema
from fedseg.simulations.backends.replay import arrays, record
from fedseg.simulations.data.federation import write_federation
from fedseg.simulations.data.neighbours import extreme_customer
from fedseg.simulations.data.synthetic import generate_federation

AS_OF, DELTA, CLAIMED = "2025-03-01T00:00:00Z", 1e-5, 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--slow-trials", type=int, default=2_000)
    parser.add_argument("--kinds", default="", help="comma-separated release kinds (default all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/privacy_audit.json"))
    args = parser.parse_args()
    z = calibrate([PlannedRelease("one", 1.0)], epsilon=CLAIMED, delta=DELTA)["one"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        fed = generate_federation(users=300, merchants=1, seed=8)
        data = write_federation(fed, root / "fed")
        table = fed.merchants["m0"]
        d, d_plus = root / "D.csv", root / "D+1.csv"
        table.to_csv(d, index=False)
        extreme_customer(table, fed.items).to_csv(d_plus, index=False)
        config = {"k": 3, "epsilon": 8.0, "rounds": 2, "as-of": AS_OF, "recommender": True,
                  "items": str(data / "items.csv"), "square-norm-share": 0.02,
                  "lifetime-value": True}  # fmt: skip
        requests = record(data, root / "out", **config)
        first = {}
        for task, payload in requests:
            first.setdefault(payload.get("release"), (task, payload))
        rows = []
        for kind in releases.KINDS:
            if kind == releases.DPSGD or kind not in first:
                continue
            if args.kinds and kind not in args.kinds.split(","):
                continue
            task, payload = first[kind]
            trials = args.slow_trials if kind == releases.CONTENT_CHECK else args.trials
            started = time.perf_counter()
            samplers = [sampler(path, task, payload, kind, z) for path in (d, d_plus)]
            noiseless = [sampler(path, task, payload, kind, 0.0)(1)[0] for path in (d, d_plus)]
            result = audit(*samplers, trials=trials, delta=DELTA,
                           direction=noiseless[1] - noiseless[0])  # fmt: skip
            rows.append(
                {
                    "release": kind,
                    "trials_per_side": trials,
                    "claimed_epsilon": CLAIMED,
                    "noise_multiplier": z,
                    "mu": result.mu,
                    "mu_claimed": 1 / z,
                    "epsilon_lower_bound_cp": result.epsilon_lower_bound,
                    "epsilon_lower_bound_gaussian": result.epsilon_gaussian_lower_bound,
                    "seconds": time.perf_counter() - started,
                }
            )
            print_row(rows[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"delta": DELTA, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


def sampler(path: Path, task: str, payload: dict, kind: str, z: float):
    """Fresh releases of ``kind`` by the merchant node holding ``path``, flattened."""
    settings = MerchantSettings(
        data_path=str(path), merchant_id="m0", as_of=AS_OF,
        policy=MerchantPolicy(epsilon_cap=math.inf), simulation_seed=0,
    )  # fmt: skip
    node = build_node(settings, ecommerce_schema())  # the run's schema (events with categories)
    node.noise_seed = None  # OS entropy, as deployed (the ledger is reset below)
    plan = AcceptedPlan(RunPlan((Release(kind, z, count=10**9),)))

    def draw(n: int) -> np.ndarray:
        out = []
        for i in range(n):
            if i % 25 == 0:  # keeps each charge cheap; the charges are not what is audited
                node.ledger = PrivacyLedger(None, epsilon_cap=math.inf, delta=DELTA)
            reply = arrays(node.answer(task, payload, plan))
            out.append(np.concatenate([reply[p].ravel() for p in sorted(reply)]))
        return np.stack(out)

    return draw


def print_row(row: dict) -> None:
    if not hasattr(print_row, "header"):
        print_row.header = True
        print(f"{'release':<30} {'trials':>7} {'claimed ε':>9} {'μ':>6} {'μ claim':>7} "
              f"{'ε ≥ (CP)':>9} {'ε ≥ (Gauss)':>11} {'s':>6}")  # fmt: skip
    print(
        f"{row['release']:<30} {row['trials_per_side']:>7} {row['claimed_epsilon']:>9.2f} "
        f"{row['mu']:>6.3f} {row['mu_claimed']:>7.3f} {row['epsilon_lower_bound_cp']:>9.3f} "
        f"{row['epsilon_lower_bound_gaussian']:>11.3f} {row['seconds']:>6.0f}"
    )


if __name__ == "__main__":
    main()
