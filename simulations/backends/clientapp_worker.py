"""One long-lived ClientApp process per SuperNode, instead of one process per message.

Flower 1.42 runs every message of a deployment in a new ``flwr-clientapp`` process: the
SuperNode's SuperExec starts one per task and ``flwr-clientapp`` exits after that task
(``run_clientapp`` ends in ``flwr_exit``). Each message then pays Python's start, the
imports (about 2.5 s) and the merchant's node being built again. Under
``flower-supernode --isolation process`` the SuperNode starts no SuperExec and waits for
an outside one; this worker is that outside process. Like Flower's SuperExec it acquires
ClientApp tasks from the SuperNode's Runtime API; unlike it, it runs each task here, with
Flower's own task functions (pull the task input, load the app named by the FAB, call it,
push the reply and the node's context), so the ClientApp module, and the merchant node it
keeps, stay loaded from one message to the next. What a task receives and returns is
exactly what ``flwr-clientapp`` would: the Context still travels through the SuperNode.

    python -m fedseg.simulations.backends.clientapp_worker --runtime-api-address HOST:PORT
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable

from flwr.app import Error, Message
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import LoadClientAppError
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime import run_clientapp
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

log = logging.getLogger("fedseg.clientapp_worker")
# A SuperNode hands out a task while it is still downloading the message's objects from the
# SuperLink; Flower then retries an unavailable object after 1 s, 2 s, ... (its
# PULL_INITIAL_BACKOFF), which alone made a local round last seconds. Here: 20 ms, ≤ 0.5 s.
QUICK_RETRY = {"initial_backoff": 0.02, "backoff_cap": 0.5}
# Imported once at start instead of inside the first messages: the app, and the accountant
# its plan check uses (dp-accounting alone takes 1-2 s to import).
PRELOAD = ("fedseg.client.app", "dp_accounting.pld")
# Between AcquireTask calls (a local request): 10 ms after a task, growing to 0.1 s when idle.
FIRST_POLL_S, DEFAULT_POLL_S = 0.01, 0.1


def quick_retries(pull):
    """``pull`` (a Flower object-pull function) with QUICK_RETRY as its retry schedule."""
    return functools.partial(pull, **QUICK_RETRY)


class ClientAppWorker:
    """Acquire ClientApp tasks from one SuperNode and run them in this process."""

    def __init__(
        self,
        runtime_api_address: str,
        *,
        poll_s: float = DEFAULT_POLL_S,
        task_ready: threading.Event | None = None,
        reply_pushed: threading.Event | None = None,
    ) -> None:
        """``task_ready`` (set by the SuperNode beside it, when it has stored a message) cuts
        a wait for the next task short; ``reply_pushed`` is set after each reply."""
        if not isinstance(run_clientapp.pull_and_inflate_object_from_tree, functools.partial):
            run_clientapp.pull_and_inflate_object_from_tree = quick_retries(
                run_clientapp.pull_and_inflate_object_from_tree
            )
        self.address = runtime_api_address
        self.poll_s = poll_s
        self.task_ready, self.reply_pushed = task_ready, reply_pushed
        self._load_app = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
        self._installed: set[str] = set()  # FAB hashes unpacked under FLWR_HOME already
        self._acquirer = self._client(RuntimeVersionHttpInterceptor(component_name="SuperExec"))

    def _client(self, *interceptors) -> RuntimeHttpClient:
        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=True,  # the Runtime API listens on this machine only, as for SuperExec
            root_certificates=None,
            interceptors=list(interceptors),
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def serve(self, *, max_tasks: int | None = None, idle: Callable[[float], None] | None = None):
        """Run tasks until the SuperNode goes away (or ``max_tasks``, for tests)."""
        idle = idle or self._idle
        done, pause = 0, FIRST_POLL_S
        while max_tasks is None or done < max_tasks:
            acquired = self._acquirer.AcquireTask(
                AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
            )
            if acquired.HasField("task") and acquired.token:
                self.run_task(acquired.token)
                done, pause = done + 1, FIRST_POLL_S
            else:
                idle(pause)
                pause = min(pause * 1.5, self.poll_s)

    def _idle(self, seconds: float) -> None:
        if self.task_ready is None:
            time.sleep(seconds)
        # The SuperNode lists a task before it has the message's objects; told when it has
        # them, the worker asks then (not earlier, to wait out Flower's retries for them).
        elif self.task_ready.wait(self.poll_s):
            self.task_ready.clear()

    def run_task(self, token: str) -> None:
        """What ``flwr-clientapp --token`` does, without the process around it."""
        client = self._client(
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token),
        )
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        message = reply = context = None
        status, details = SubStatus.FAILED, "ClientApp task failed"
        times = [time.perf_counter()]  # start, input pulled, answered, reply pushed
        try:
            message, context, run, fab = pull_task_input(client)
            if fab.hash_str not in self._installed:
                install_from_fab(fab.content, skip_prompt=True)
                self._installed.add(fab.hash_str)
            app = self._load_app(run.fab_id, run.fab_version, fab.hash_str)
            times.append(time.perf_counter())
            reply = app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
            times.append(time.perf_counter())
        except Exception as exc:  # noqa: BLE001 - a failed task is an Error reply, as in Flower
            code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            if isinstance(exc, LoadClientAppError):
                code = ErrorCode.LOAD_CLIENT_APP_EXCEPTION
            log.error("ClientApp raised an exception", exc_info=exc)
            details = f"{type(exc)}:<'{exc}'>"
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
                push_task_output(client, context, status, details)
            finally:
                heartbeat.stop()
                client.close()
                if self.reply_pushed is not None:
                    self.reply_pushed.set()
        if len(times) == 3:  # where a message's time goes (benchmarks/deploy_speed.py)
            times.append(time.perf_counter())
            steps = ", ".join(f"{n} {b - a:.3f} s" for n, a, b in
                              zip(("input", "answer", "reply"), times, times[1:], strict=False))  # fmt: skip
            log.info("%s: %s", message.metadata.message_type, steps)


def preload(modules: Iterable[str] = PRELOAD) -> None:
    for module in modules:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's HOST:PORT")
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_S)
    parser.add_argument("--parent-pid", type=int, help="exit with this process (the SuperNode)")
    parser.add_argument("--preload", default=",".join(PRELOAD), help="import before any task")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per local request
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    worker = ClientAppWorker(args.runtime_api_address, poll_s=args.poll_interval)
    preload(filter(None, args.preload.split(",")))  # while the SuperNode connects
    worker.serve()


if __name__ == "__main__":
    main()
