"""Starting and stopping the Flower processes of a local deployment, leaving none behind.

Every service starts in its own session (``start_new_session``), so one signal to its
process group reaches the SuperExec and ClientApp processes a SuperNode forks. The
SuperLink detaches its SuperExec (and so the ServerApp) into sessions of their own, so
each deployment also tags its environment with a unique ``FEDSEG_DEPLOYMENT`` marker,
which every descendant inherits: ``leftovers`` finds them by it, even once re-parented.
``stop_all`` (also run at interpreter exit) terminates, waits, kills and reaps them all.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER_VARIABLE = "FEDSEG_DEPLOYMENT"


class DeploymentError(RuntimeError):
    """A deployment step failed; the message names the step and points to its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS reports free right now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def flower_executable(name: str) -> str:
    """Path of a Flower console script, preferring the running interpreter's environment."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise DeploymentError(f"{name}: not found next to {sys.executable} nor on PATH")
    return found


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (Linux ``/proc``; ``kill 0`` elsewhere)."""
    status = Path(f"/proc/{pid}/stat")
    if status.parent.parent.exists() and Path("/proc/self").exists():
        try:
            return status.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment holds ``FEDSEG_DEPLOYMENT=<marker>`` (Linux /proc)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and pid_alive(
                int(entry.name)
            ):
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (scans ``/proc``; Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            members.append(int(entry.name))
    return members


@dataclass
class Service:
    """One started process (the leader of its own process group) and its log file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProcessGroup:
    """The services of one deployment; stops every one of them, also at interpreter exit."""

    def __init__(self, log_dir: str | Path, *, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.marker = uuid.uuid4().hex
        self.env = {**(os.environ if env is None else env), MARKER_VARIABLE: self.marker}
        self.services: list[Service] = []
        atexit.register(self.stop_all)

    def start(self, name: str, command: Sequence[str], *, cwd: str | Path | None = None) -> Service:
        """Start ``command`` in a new session, stdout and stderr into ``<log_dir>/<name>.log``."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=cwd,
                start_new_session=True,
            )
        service = Service(name, process, log_path)
        self.services.append(service)
        return service

    def stop(self, service: Service, *, sig: int = signal.SIGTERM, grace_s: float = 5.0) -> None:
        """Signal the service's whole process group; SIGKILL whatever outlives ``grace_s``."""
        _signal_group(service.pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (service.running() or group_members(service.pid)):
            time.sleep(0.05)
        _signal_group(service.pid, signal.SIGKILL)
        try:
            service.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        _wait_until(lambda: not group_members(service.pid), grace_s)

    def kill(self, service: Service) -> None:
        """Kill the service's process group at once, as a crash or power cut would."""
        self.stop(service, sig=signal.SIGKILL, grace_s=5.0)

    def stop_all(self, *, grace_s: float = 5.0) -> None:
        """Stop every service, newest first (SuperNodes before the SuperLink), then any
        detached descendant still carrying this deployment's marker. Services started after
        the first (the SuperNodes) are signalled together, so they wind down in parallel."""
        for service in self.services[1:]:
            _signal_group(service.pid, signal.SIGTERM)
        for service in reversed(self.services):
            self.stop(service, grace_s=grace_s)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.leftovers():
                _signal_pid(pid, sig)
            if _wait_until(lambda: not self.leftovers(), grace_s):
                return

    def leftovers(self) -> list[int]:
        """Pids of this deployment still alive (empty after ``stop_all``)."""
        return sorted(
            set(marked_processes(self.marker))
            | {pid for s in self.services for pid in group_members(s.pid)}
        )


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
