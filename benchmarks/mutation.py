"""Mutation run over the defences: how many mutants of each module its tests kill.

A thin driver around cosmic-ray (``pip install cosmic-ray==8.7.0``; not a dev dependency:
CI never runs this, it takes tens of minutes). cosmic-ray mutates a module one operator
occurrence at a time (arithmetic, comparison and boolean operators, numbers, ``not``,
loops, decorators…) and runs a test command against each mutant; a mutant whose tests
fail (or time out) is killed. This driver only

- copies the working tree (tracked and untracked files, so uncommitted edits count) into a
  temporary directory per worker and points ``fedseg.*`` at the copy, so nothing is ever
  mutated in the checkout you are editing;
- picks each module's tests (``MODULES``), checks they pass unmutated, and runs cosmic-ray's
  own ``init`` and ``exec`` (``--jobs N``: N HTTP workers on localhost, cosmic-ray's ``http``
  distributor, each in its own copy);
- prints one row per module (mutants, killed, survived, score = killed / (killed +
  survived)) and every survivor with its line and diff, and writes
  benchmarks/results/mutation.json.

Usage:
    python benchmarks/mutation.py                          # every module in MODULES
    python benchmarks/mutation.py server/robust.py         # one module (its tests from MODULES)
    python benchmarks/mutation.py server/robust.py --tests tests/test_robust_aggregation.py
    python benchmarks/mutation.py --jobs 2                 # two workers (2-core machine)
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
PARTS = ("server", "client", "privacy", "simulations")  # package-dir: fedseg.<part> → <part>/
# Each defence module and the tests that guard it, in tiers: a mutant runs the next tier only
# if it survived the previous one (the first tiers are quick unit tests, the last the shipped
# apps, which cost ~8 s of imports each), and pytest stops at the first failure.
MODULES = {
    "server/validation.py": [
        ["tests/test_robust_validation.py"],
        ["tests/test_robust_rules_shipped.py"],
    ],
    "server/robust.py": [
        ["tests/test_robust_aggregation.py", "tests/test_robust_validation.py"],
        ["tests/test_robust_rules_shipped.py", "tests/test_robust_hostile.py"],
    ],
    "server/secure.py": [["tests/test_secagg_flower.py"]],
    "privacy/ledger.py": [
        ["tests/test_privacy_ledger.py", "-k", "not concurrent_processes"],
        ["tests/test_privacy_ledger.py", "-k", "concurrent_processes"],
    ],
    "privacy/secagg/client_checks.py": [["tests/test_secagg_security.py"], ["tests/test_secagg_attacks.py"]],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: all of MODULES)")
    parser.add_argument("--tests", nargs="+", help="test files, one tier (default: MODULES)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel workers (default 1)")
    args = parser.parse_args()
    modules = args.modules or list(MODULES)
    results = {}
    for module in modules:
        tiers = [args.tests] if args.tests else MODULES.get(module)
        if not tiers:
            sys.exit(f"{module}: no tests known for it; name them with --tests")
        results[module] = run_module(module, tiers, jobs=args.jobs)
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**previous, **results}, indent=1) + "\n")


def test_command(tiers: list[list[str]]) -> str:
    """One shell line running the tiers in order, stopping at the first that fails."""
    pytest = f"{sys.executable} -m pytest -x -q -p no:cacheprovider"
    runs = " && ".join(f"{pytest} {' '.join(shlex.quote(a) for a in tier)}" for tier in tiers)
    return f"sh -c {shlex.quote(runs)}"


def run_module(module: str, tiers: list[list[str]], *, jobs: int) -> dict:
    """cosmic-ray init + exec over ``module``; the outcome of every mutant."""
    with contextlib.ExitStack() as stack:
        copies = [stack.enter_context(tree_copy()) for _ in range(max(jobs, 1))]
        env = importing_from(copies[0])
        command = test_command(tiers)
        started = time.perf_counter()
        baseline = subprocess.run(shlex.split(command), cwd=copies[0], env=env, capture_output=True)
        if baseline.returncode != 0:
            sys.exit(f"{module}: its tests fail unmutated:\n{baseline.stdout.decode()[-3000:]}")
        seconds = time.perf_counter() - started
        config = copies[0] / "cosmic-ray.toml"
        workers = [free_port() for _ in copies] if jobs > 1 else []
        config.write_text(
            cosmic_ray_config(module, command, timeout=3 * seconds + 30, ports=workers)
        )
        session = copies[0] / "session.sqlite"
        cosmic_ray(["init", str(config), str(session)], cwd=copies[0], env=env)
        skipped = skip_annotations(session, copies[0] / module)
        for copy, port in zip(copies, workers, strict=False):
            stack.enter_context(http_worker(copy, port))
        print(f"{module}: baseline {seconds:.1f} s, {skipped} mutants of annotations skipped, "
              "mutating…", flush=True)  # fmt: skip
        cosmic_ray(["exec", str(config), str(session)], cwd=copies[0], env=env)
        dump = cosmic_ray(["dump", str(session)], cwd=copies[0], env=env)
        source = (copies[0] / module).read_text().splitlines()
    items = [json.loads(line) for line in dump.splitlines() if line]
    return {"command": command, **summarize(items, source, tiers)}


def annotation_lines(path: Path) -> set[tuple[int, int]]:
    """(line, column) of every token inside a type annotation. With ``from __future__ import
    annotations`` they are strings nobody evaluates, so a mutant there is equivalent."""
    tree = ast.parse(path.read_text())
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               and any(a.name == "annotations" for a in n.names) for n in tree.body):  # fmt: skip
        return set()
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            spans.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            spans += [a.annotation for a in ast.walk(node.args) if isinstance(a, ast.arg)
                      and a.annotation is not None]  # fmt: skip
            spans += [node.returns] if node.returns is not None else []
    return {(s.lineno, s.col_offset, s.end_lineno, s.end_col_offset) for s in spans}


def skip_annotations(session: Path, module: Path) -> int:
    """Mark the mutants that fall inside annotations as skipped (cosmic-ray's own filters do the
    same for pragmas); returns how many."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_lines(module)

    def inside(pos: tuple[int, int]) -> bool:
        return any((a, b) <= tuple(pos) <= (c, d) for a, b, c, d in spans)

    with use_db(str(session)) as db:
        jobs = [w.job_id for w in db.pending_work_items if all(
            inside(m.start_pos) and inside(m.end_pos) for m in w.mutations)]  # fmt: skip
        if jobs:
            db.set_multiple_results(jobs, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return len(jobs)


def summarize(items: list, source: list[str], tiers: list[list[str]]) -> dict:
    outcomes = {"killed": 0, "survived": 0, "incompetent": 0, "skipped": 0}
    survivors = []
    for work, result in items:
        if (result or {}).get("worker_outcome") == "skipped":
            outcome = "skipped"
        else:
            outcome = (result or {}).get("test_outcome") or "incompetent"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "survived":
            mutation = work["mutations"][0]
            line = mutation["start_pos"][0]
            survivors.append({
                "line": line, "operator": mutation["operator_name"],
                "occurrence": mutation["occurrence"], "source": source[line - 1].strip(),
                "diff": [d for d in result["diff"].splitlines() if d[:1] in "+-" and d[:3] not in ("+++", "---")],
            })  # fmt: skip
    decided = outcomes["killed"] + outcomes["survived"]
    return {
        "tests": tiers,
        "mutants": len(items),
        **outcomes,
        "score": outcomes["killed"] / decided if decided else None,
        "survivors": sorted(survivors, key=lambda s: (s["line"], s["operator"])),
    }


def print_table(results: dict) -> None:
    for module, r in results.items():
        print(f"\n{module}: {len(r['survivors'])} survivors")
        for s in r["survivors"]:
            print(f"  line {s['line']:4d}  {s['operator']}  #{s['occurrence']}")
            print("\n".join(f"      {d}" for d in s["diff"]))
    print(
        "\n| module | mutants | skipped (annotations) | killed | survived | incompetent | score |"
    )
    print("|---|---|---|---|---|---|---|")
    for module, r in results.items():
        score = "–" if r["score"] is None else f"{100 * r['score']:.1f}%"
        print(f"| {module} | {r['mutants']} | {r['skipped']} | {r['killed']} | {r['survived']} | "
              f"{r['incompetent']} | {score} |")  # fmt: skip


def cosmic_ray_config(module: str, command: str, *, timeout: float, ports: list[int]) -> str:
    distributor = '[cosmic-ray.distributor]\nname = "local"\n'
    if ports:
        urls = ", ".join(f'"http://127.0.0.1:{p}"' for p in ports)
        distributor = (
            '[cosmic-ray.distributor]\nname = "http"\n\n'
            f"[cosmic-ray.distributor.http]\nworker-urls = [{urls}]\n"
        )
    return (
        f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {timeout:.0f}\n'
        f"excluded-modules = []\ntest-command = {json.dumps(command)}\n\n{distributor}"
    )


@contextlib.contextmanager
def tree_copy():
    """The working tree (tracked and untracked, not ignored) in a temporary directory, with
    ``_import/fedseg/<part>`` linked to ``<part>/`` so the copy's code is what tests import."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fedseg-mutation-") as tmp:
        copy = Path(tmp)
        for name in filter(None, files):
            if (ROOT / name).is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, copy / name)
        (copy / "_import" / "fedseg").mkdir(parents=True)
        for part in PARTS:
            (copy / "_import" / "fedseg" / part).symlink_to(copy / part, target_is_directory=True)
        check = [sys.executable, "-c", "import fedseg.server.validation as m; print(m.__file__)"]
        where = subprocess.run(check, cwd=copy, env=importing_from(copy), capture_output=True)
        if not where.stdout.decode().startswith(str(copy)):
            sys.exit(f"the copy's fedseg is not the one imported: {where.stdout or where.stderr}")
        yield copy


def importing_from(copy: Path) -> dict:
    """The environment in which ``import fedseg.…`` finds the copy before the editable
    install (a path entry is searched before setuptools' editable finder)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(copy / "_import"), env.get("PYTHONPATH")])
    )
    return env


@contextlib.contextmanager
def http_worker(copy: Path, port: int):
    """A cosmic-ray HTTP worker serving mutate-and-test requests in ``copy``."""
    # cosmic-ray's own worker (``cosmic-ray http-worker``), listening on the loopback only.
    serve = (
        "from aiohttp import web; from cosmic_ray.distribution.http import "
        "handle_mutate_and_test as h; app = web.Application(); app.add_routes([web.post('/', h)]); "
        f"web.run_app(app, host='127.0.0.1', port={port}, print=None)"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", serve], cwd=copy, env=importing_from(copy),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # listening yet?
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def cosmic_ray(args: list[str], *, cwd: Path, env: dict) -> str:
    done = subprocess.run([*cosmic_ray_cli(), *args], cwd=cwd, env=env, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"cosmic-ray {args[0]} failed:\n{done.stderr.decode()[-3000:]}")
    return done.stdout.decode()


def cosmic_ray_cli() -> list[str]:
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        sys.exit("cosmic-ray is not installed here: pip install cosmic-ray==8.7.0")
    return [str(Path(sys.executable).parent / "cosmic-ray")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
