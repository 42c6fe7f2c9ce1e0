"""Run a benchmark's case against an earlier fedseg in the same job, for ratios; and the
CPU time and memory of a run, its forked workers included.

``baseline_path(ref)`` unpacks git ``ref`` of this repository into a temporary directory
laid out as an importable ``fedseg`` package; a child process with that directory first on
``PYTHONPATH`` imports the earlier code instead of the installed one (which the editable
install maps to this tree). The benchmark's own script, data and arguments stay the same.
"""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ("client", "server", "privacy", "simulations")


def cpu_time() -> float:
    """CPU seconds of this process and of its children that have ended (an in-process run's
    forked workers end with the run): ``process_time`` alone misses the workers'."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory (MB) of this process and of its largest ended child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def baseline_path(ref: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="fedseg-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, *PARTS],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root / "tree", filter="data")
    package = root / "fedseg"
    package.mkdir()
    (package / "__init__.py").touch()
    for part in PARTS:
        (package / part).symlink_to(root / "tree" / part)
    return root


def run_child(args: list[str], *, pythonpath: Path | None) -> str:
    """``python <args>`` with the baseline first on the path (None: this tree); its stdout."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout
