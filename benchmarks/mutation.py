"""Mutation run over the defences: how many mutants of each module its tests kill.

A thin driver around cosmic-ray (``pip install cosmic-ray==8.7.0``; not a dev dependency:
CI never runs this, it takes tens of minutes). cosmic-ray mutates a module one operator
occurrence at a time (arithmetic, comparison and boolean operators, numbers, ``not``,
loops, decorators…) and runs a test command against each mutant; a mutant whose tests
fail (or time out) is killed. This driver only

- copies the working tree (tracked and untracked files, so uncommitted edits count) into a
  temporary directory per worker and points ``fedseg.*`` at the copy, so nothing is ever
  mutated in the checkout you are editing;
- picks each module's tests (``MODULES``: tiers, quick unit tests first, the shipped apps
  last; a mutant reaches a tier only by surviving the ones before), checks they pass
  unmutated, and runs cosmic-ray's own ``init`` and ``exec`` (``--jobs N``: N HTTP workers on
  localhost, cosmic-ray's ``http`` distributor, each in its own copy);
- runs each tier in a fresh pytest forked from a warm server per copy (third-party imports
  done once, fedseg never imported before the fork);
- skips mutants inside type annotations (never evaluated under ``from __future__ import
  annotations``) and, with ``--sample N``, all but N mutants drawn with ``--seed``;
- prints one row per module (mutants, killed, survived, score = killed / (killed +
  survived)) and every survivor with its line and diff, and writes
  benchmarks/results/mutation.json.

Usage:
    python benchmarks/mutation.py                          # every module in MODULES
    python benchmarks/mutation.py server/robust.py         # one module (its tests from MODULES)
    python benchmarks/mutation.py server/robust.py --tests tests/test_robust_aggregation.py
    python benchmarks/mutation.py --jobs 2                 # two workers (2-core machine)
    python benchmarks/mutation.py server/validation.py --jobs 2 --sample 200 --seed 0
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shlex
import shutil
import signal
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
    # The shipped apps once (plain sums: every aggregation calls the same check_reply).
    "server/validation.py": [
        ["tests/test_robust_validation.py", "tests/test_robust_aggregation.py"],
        ["tests/test_robust_rules_shipped.py", "-k", "sum"],
    ],
    "server/robust.py": [
        ["tests/test_robust_aggregation.py", "tests/test_robust_validation.py"],
        ["tests/test_robust_rules_shipped.py", "-k", "median or trimmed"],
        ["tests/test_robust_hostile.py", "-m", "not slow", "-k", "median"],
    ],
    "server/secure.py": [
        ["tests/test_secagg_flower.py", "-k", "dropouts or silent or not_asked or its_share or share_one_deadline or moment_to_answer "
         "or over_one_merchant or exactly_min_clients"],
        ["tests/test_secagg_flower.py"],
    ],
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
    parser.add_argument("--sample", type=int, help="run this many mutants, drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: a worker's test server
    parser.add_argument("--ask", help=argparse.SUPPRESS)  # internal: cosmic-ray's test command
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.ask:
        sys.exit(ask(args.ask))
    modules = args.modules or list(MODULES)
    results = {}
    for module in modules:
        tiers = [args.tests] if args.tests else MODULES.get(module)
        if not tiers:
            sys.exit(f"{module}: no tests known for it; name them with --tests")
        results[module] = run_module(module, tiers, jobs=args.jobs, sample=args.sample,
                                     seed=args.seed)  # fmt: skip
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**previous, **results}, indent=1) + "\n")


# -- running tests fast: one warm process per worker forks a fresh pytest per tier ----------
#
# Importing numpy, scipy, pandas, flwr and dp-accounting costs 5-8 s on the loaded machine,
# more than most tiers' tests. A worker's server imports them once (never fedseg: a forked
# child imports the mutated source afresh, and no bytecode is written) and forks one child per
# tier, which runs pytest in the worker's copy and exits with pytest's status.

SOCKET, TIERS = ".mutation.sock", ".mutation-tiers.json"
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider"]
WARM = ("numpy", "scipy.stats", "scipy.optimize", "pandas", "pyarrow", "hypothesis", "pytest",
        "flwr.app", "flwr.serverapp", "flwr.clientapp", "dp_accounting", "cryptography",
        "typer", "sklearn.cluster")  # fmt: skip


def serve(path: str) -> None:
    import importlib

    import pytest

    for name in WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    assert not [m for m in sys.modules if m.split(".")[0] == "fedseg"], "fedseg imported warm"
    sys.dont_write_bytecode = True
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        while True:
            connection, _ = server.accept()
            with connection:
                request = json.loads(connection.makefile().readline())
                child = os.fork()
                if child == 0:  # a fresh pytest run over the copy's (mutated) code
                    server.close()
                    os.setpgid(0, 0)
                    os._exit(int(pytest.main([*PYTEST_ARGS, *request["tier"]])))
                status = wait_or_kill(child, request["timeout"])
                connection.sendall(f"{status}\n".encode())


def wait_or_kill(child: int, timeout: float) -> int:
    """The child's exit status; a child still running after ``timeout`` is killed (status 1:
    a mutant that hangs the tests counts as killed, as in cosmic-ray)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return 1


def ask(path: str) -> int:
    """cosmic-ray's test command: run the tiers through this worker's server, in order,
    stopping at the first that fails; pytest's status of the last tier run."""
    plan = json.loads(Path(TIERS).read_text())
    for tier in plan["tiers"]:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(path)
            request = {"tier": tier, "timeout": plan["timeout"]}
            connection.sendall((json.dumps(request) + "\n").encode())
            status = int(connection.makefile().readline() or 1)
        if status != 0:
            return status
    return 0


def write_tiers(copy: Path, tiers: list[list[str]], *, timeout: float) -> None:
    (copy / TIERS).write_text(json.dumps({"tiers": tiers, "timeout": timeout}))


@contextlib.contextmanager
def test_server(copy: Path, tiers: list[list[str]]):
    """A worker's warm test server, listening on ``copy/.mutation.sock``."""
    write_tiers(copy, tiers, timeout=1800)
    server = subprocess.Popen(
        [sys.executable, str(copy / "benchmarks" / "mutation.py"), "--serve", SOCKET],
        cwd=copy, env=importing_from(copy),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (copy / SOCKET).exists():
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the test server in {copy} did not start")
            time.sleep(0.2)
        yield
    finally:
        server.kill()
        server.wait(timeout=30)


def run_module(
    module: str, tiers: list[list[str]], *, jobs: int, sample: int | None = None, seed: int = 0
) -> dict:
    """cosmic-ray init + exec over ``module``; the outcome of every mutant."""
    with contextlib.ExitStack() as stack:
        copies = [stack.enter_context(tree_copy()) for _ in range(max(jobs, 1))]
        env = importing_from(copies[0])
        for copy in copies:
            stack.enter_context(test_server(copy, tiers))
        command = f"{sys.executable} benchmarks/mutation.py --ask {SOCKET}"
        started = time.perf_counter()
        baseline = subprocess.run(shlex.split(command), cwd=copies[0], env=env)
        if baseline.returncode != 0:
            sys.exit(f"{module}: its tests fail unmutated: {tiers}")
        seconds = time.perf_counter() - started
        for copy in copies:  # a hung mutant's tests are stopped before cosmic-ray gives up
            write_tiers(copy, tiers, timeout=3 * seconds + 20)
        config = copies[0] / "cosmic-ray.toml"
        workers = [free_port() for _ in copies] if jobs > 1 else []
        config.write_text(
            cosmic_ray_config(module, command, timeout=3 * seconds + 30, ports=workers)
        )
        session = copies[0] / "session.sqlite"
        cosmic_ray(["init", str(config), str(session)], cwd=copies[0], env=env)
        skipped = skip_annotations(session, copies[0] / module)
        unsampled = keep_sample(session, sample, seed=seed) if sample else 0
        for copy, port in zip(copies, workers, strict=False):
            stack.enter_context(http_worker(copy, port))
        print(f"{module}: baseline {seconds:.1f} s, {skipped} mutants of annotations skipped, "
              f"{unsampled} left out of the sample, mutating…", flush=True)  # fmt: skip
        cosmic_ray(["exec", str(config), str(session)], cwd=copies[0], env=env)
        dump = cosmic_ray(["dump", str(session)], cwd=copies[0], env=env)
        source = (copies[0] / module).read_text().splitlines()
    items = [json.loads(line) for line in dump.splitlines() if line]
    shown = " && ".join(f"pytest {' '.join([*PYTEST_ARGS, *tier])}" for tier in tiers)
    summary = summarize(items, source, tiers)
    summary["unsampled"], summary["skipped"] = unsampled, summary["skipped"] - unsampled
    return {"command": shown, "sample": sample, "seed": seed, **summary}


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


def keep_sample(session: Path, size: int, *, seed: int) -> int:
    """Leave all but ``size`` pending mutants, drawn at random, out of the run (marked
    skipped); returns how many were left out."""
    import random

    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session)) as db:
        pending = sorted(w.job_id for w in db.pending_work_items)
        kept = set(random.Random(seed).sample(pending, min(size, len(pending))))
        left = [job for job in pending if job not in kept]
        if left:
            db.set_multiple_results(left, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return len(left)


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
    print("\n| module | mutants | in annotations | not sampled | killed | survived | incompetent "
          "| score |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for module, r in results.items():
        score = "–" if r["score"] is None else f"{100 * r['score']:.1f}%"
        print(f"| {module} | {r['mutants']} | {r['skipped']} | {r.get('unsampled', 0)} | "
              f"{r['killed']} | {r['survived']} | {r['incompetent']} | {score} |")  # fmt: skip


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
