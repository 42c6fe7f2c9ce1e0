"""Per-merchant ``customer_features`` of small Parquet features tables, this tree vs a git ref.

The shape of a large in-process simulation's describe phase: many merchants of ~100
customers, ``user_id`` plus numeric columns. Each side loads every file once to warm up,
then is timed (CPU seconds per merchant) in a child process; the sides alternate
``--repeats`` times and the best of each is compared, so a busy machine slows both.

    python -c "from pathlib import Path; from fedseg.simulations.data.mixture import \
gaussian_mixture_federation as g, write_mixture_federation as w; \
print(w(g(n=100_000, d=8, k=5, merchants=1000, alpha=1.0, seed=0), Path('/tmp/fedfl'), fmt='parquet'))"
    python benchmarks/features_load_ratio.py /tmp/fedfl --baseline main
"""

from __future__ import annotations

import argparse
import sys

from baseline import baseline_path, run_child

CHILD = """
import sys, time
from pathlib import Path
from fedseg.client.features import customer_features
from fedseg.privacy.pseudonyms import Pseudonymizer
files = sorted(Path(sys.argv[1]).rglob("*.parquet"))[: int(sys.argv[2])]
keys = [Pseudonymizer.for_simulation(p.stem, 0) for p in files]
for path, key in zip(files, keys):
    customer_features(path, pseudonymizer=key)
start = time.process_time()
for path, key in zip(files, keys):
    customer_features(path, pseudonymizer=key)
print((time.process_time() - start) / len(files) * 1e3)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("federation", help="a folder of merchants/<id>.parquet")
    parser.add_argument("--baseline", default="main", help="git ref to compare with")
    parser.add_argument("--merchants", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    old_tree = baseline_path(args.baseline)
    best = {"baseline": float("inf"), "this tree": float("inf")}
    for _ in range(args.repeats):
        for side, path in (("baseline", old_tree), ("this tree", None)):
            child = ["-c", CHILD, args.federation, str(args.merchants)]
            best[side] = min(best[side], float(run_child(child, pythonpath=path)))
    print(f"{'code':12} {'ms / merchant':>14}")
    for side, ms in best.items():
        print(f"{side:12} {ms:>14.2f}")
    print(f"ratio {best['baseline'] / best['this tree']:.2f}x ({args.baseline} / this tree)")


if __name__ == "__main__":
    sys.exit(main())
