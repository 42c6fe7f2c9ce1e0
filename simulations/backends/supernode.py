"""``flower-supernode`` with a long-lived ClientApp process and a shorter poll while busy.

Two things make a message round of a Flower 1.42 deployment take seconds when the work
takes milliseconds (BENCHMARKS.md, "Deployment"): a new ClientApp process per message, and
the SuperNode's fixed waits — it asks the SuperLink for a message, and when none is there
sleeps 3 s before asking again (``start_client_internal``: ``time.sleep(3)``), and checks
for its ClientApp's reply every 0.5 s. Flower has no option for either wait.

This launcher runs Flower's own ``flower-supernode`` in this process with every argument
passed through, and

- by default adds ``--isolation process`` and runs one ``clientapp_worker`` in a thread of
  this process, so the ClientApp stays loaded (a worker process of its own would pay
  Python's start and Flower's imports a second time: about 2 s of CPU per merchant);
- replaces the module-level ``time`` of ``flwr.supernode.start_client_internal`` by a
  clock whose ``sleep`` asks the SuperLink every ``--poll-interval`` seconds (and looks for
  its own ClientApp's reply when the worker says it pushed one, at least every 50 ms) for
  ``--busy-window`` seconds after the last message (or the start), then falls
  back to Flower's own waits.

    python -m fedseg.simulations.backends.supernode [--poll-interval S] [--no-worker] \\
        -- flower-supernode ARGS...
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

import flwr.supernode.start_client_internal as internal
from fedseg.simulations.backends.clientapp_worker import ClientAppWorker, preload, quick_retries
from flwr.common.logger import update_console_handler
from flwr.supernode.cli import flower_supernode

DEFAULT_POLL_S = 0.2
DEFAULT_BUSY_WINDOW_S = 120.0
FLOWER_IDLE_WAIT_S = 3.0  # the sleep this replaces; checked by tests/test_deploy_units.py
LOCAL_WAIT_S = 0.05  # the longest wait for this node's own ClientApp (woken when it replies)
WORKER_IDLE_POLL_S = 2.0  # the worker's slowest look for a task (woken when one is stored)


class BusyPolling:
    """Stands in for ``time`` inside Flower's SuperNode loop: short sleeps while a run is
    active (a message was pulled within ``busy_window_s``), Flower's own ones otherwise."""

    def __init__(self, poll_s: float, busy_window_s: float) -> None:
        self.poll_s, self.busy_window_s = poll_s, busy_window_s
        # A SuperNode just started is as busy as one that just answered: its run is often
        # submitted already, and Flower's 3 s wait made the first round seconds longer.
        self.last_message = time.monotonic()
        # With the ClientApp worker in this process: it is told when a message is stored,
        # and tells when its reply is, so neither side waits out a poll for the other.
        self.task_ready, self.reply_pushed = threading.Event(), threading.Event()

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if time.monotonic() - self.last_message <= self.busy_window_s:
            # The 3 s wait is between requests to the SuperLink; the shorter ones wait for
            # this node's own ClientApp (a look at local state, cheap to repeat).
            if seconds < FLOWER_IDLE_WAIT_S:  # waiting for the reply of its own ClientApp
                if self.reply_pushed.wait(LOCAL_WAIT_S):
                    self.reply_pushed.clear()
                return
            seconds = min(seconds, self.poll_s)
        time.sleep(seconds)

    def wrap_pull(self, pull):
        def pulled(*args, **kwargs):
            run_id = pull(*args, **kwargs)
            if run_id is not None:
                self.last_message = time.monotonic()
                self.task_ready.set()
            return run_id

        return pulled


def install(poll_s: float, busy_window_s: float) -> BusyPolling:
    """Patch Flower's SuperNode loop in this process (before it starts)."""
    clock = BusyPolling(poll_s, busy_window_s)
    internal.time = clock
    internal._pull_and_store_message = clock.wrap_pull(internal._pull_and_store_message)
    # The SuperLink lists a message before the ServerApp has uploaded all its objects.
    internal.pull_objects = quick_retries(internal.pull_objects)
    return clock


def runtime_address(flower_args: list[str]) -> str:
    """The Runtime API address the SuperNode will listen on (its --host/--port)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="9094")
    known, _ = parser.parse_known_args(flower_args)
    return f"{known.host}:{known.port}"


def without_isolation(flower_args: list[str]) -> list[str]:
    """``flower_args`` less any ``--isolation MODE`` (this launcher sets its own)."""
    kept, skip = [], False
    for arg in flower_args:
        if skip:
            skip = False
        elif arg == "--isolation":
            skip = True
        elif not arg.startswith("--isolation="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, flower_args = argv[:split], argv[split + 1 :]
    if flower_args[:1] == ["flower-supernode"]:  # the command line as Flower's, for reading
        flower_args = flower_args[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_S)
    parser.add_argument("--busy-window", type=float, default=DEFAULT_BUSY_WINDOW_S)
    parser.add_argument("--no-worker", action="store_true", help="a ClientApp process per message")
    args = parser.parse_args(own)
    clock = install(args.poll_interval, args.busy_window)
    update_console_handler(timestamps=True)  # the log says when each message came and went
    if not args.no_worker:
        flower_args = [*without_isolation(flower_args), "--isolation", "process"]
        _log_fedseg()  # the merchant's own log lines, as the worker process printed them
        worker = ClientAppWorker(
            runtime_address(flower_args),
            poll_s=WORKER_IDLE_POLL_S,
            task_ready=clock.task_ready,
            reply_pushed=clock.reply_pushed,
        )
        # A daemon thread: it ends with the SuperNode, as Flower's SuperExec does.
        threading.Thread(
            target=_serve, args=(worker,), name="clientapp-worker", daemon=True
        ).start()
    sys.argv = ["flower-supernode", *flower_args]
    try:
        flower_supernode()
    except SystemExit as done:  # Flower's own exit handlers have run
        _exit_now(done.code)


def _exit_now(code: int | str | None) -> None:
    """End the process without the interpreter's teardown of every loaded module, which
    took 1–2 s of a stopped SuperNode (BENCHMARKS.md, issue 20). Whatever the ClientApp
    recorded is on disk already (the ledger is written atomically and fsynced before a
    reply leaves); only the log streams need flushing."""
    if isinstance(code, str):  # as the interpreter would have printed it
        print(code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _log_fedseg() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fedseg = logging.getLogger("fedseg")  # Flower's own logger keeps its own handler
    fedseg.addHandler(handler)
    fedseg.setLevel(logging.INFO)
    fedseg.propagate = False


def _serve(worker: ClientAppWorker) -> None:
    preload()  # while the SuperNode connects
    worker.serve()


if __name__ == "__main__":
    main()
