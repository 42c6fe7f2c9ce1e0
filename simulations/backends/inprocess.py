"""An in-process Flower ``Grid``: the real ServerApp and ClientApp, no SuperLink, no Ray.

It behaves like a transport where it matters: every message is copied on the way out
and back (client mods mutate content; a real transport serializes), each node keeps
its own ``Context`` across rounds, and a ClientApp exception becomes an ``Error``
reply, as the real runtimes do. Clients run one after another, so runs are
deterministic and cost microseconds per message.

With ``workers`` > 1 the merchants are split over that many forked processes, each
merchant always in the same one (its node, cache and ledger live there): a worker answers
its merchants' messages one after another, in the order they were asked, and the replies
come back in that order, so the run and its model are the same to the last bit as with
one process; only the wall time differs.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import multiprocessing
import pickle
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import Array, Context, Error, Message, RecordDict
from flwr.app.message.typeddict import TypedDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SUPERLINK_NODE_ID = 1  # Flower's own id for the server side
CLIENT_APP_ERROR = 2  # Flower's ErrorCode.CLIENT_APP_RAISED_EXCEPTION
_WORKER_STOP_S = 10.0  # a worker's time to end its loop once told to
_YOUNG_COLLECTION_THRESHOLD = 10_000  # allocations between young collections (default 700)


class InProcessGrid(Grid):
    """Runs ``client_app`` for node ``partition_id + 2`` when a message is pushed to it."""

    def __init__(
        self,
        client_app: ClientApp,
        num_nodes: int,
        *,
        run: Run,
        node_config: Callable[[int], dict] | None = None,
        on_reply: Callable[[Message], None] | None = None,
        dropout: float = 0.0,
        seed: int = 0,
        workers: int = 1,
    ) -> None:
        self.client_app = client_app
        self.workers = max(1, min(int(workers), num_nodes))
        self._pipes: list = []  # one connection per forked worker, started at the first push
        self._processes: list = []
        self.on_reply = on_reply
        self.dropout = dropout  # probability that a node never answers a given message
        self._drops = np.random.default_rng([seed, 0xD209])
        self._run = run
        node_config = node_config or (lambda pid: {})
        self.contexts = {
            pid + 2: Context(
                run_id=run.run_id,
                node_id=pid + 2,
                node_config={"partition-id": pid, "num-partitions": num_nodes, **node_config(pid)},
                state=RecordDict(),
                run_config=dict(run.override_config),
            )
            for pid in range(num_nodes)
        }
        self._replies: dict[str, Message] = {}
        self._ids = itertools.count(1)

    def _new_id(self) -> str:
        """A message id unique in this grid: a counter, 32 hex digits as a uuid's (a real
        SuperLink hashes the message; nothing here reads an id beyond matching replies)."""
        return f"{next(self._ids):032x}"

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids, delivered = [], []
        for message in messages:
            message = copied(message)
            message.metadata.__dict__["_message_id"] = self._new_id()
            ids.append(message.metadata.message_id)
            if self.dropout and self._drops.random() < self.dropout:
                continue  # the merchant went away: no reply, as after a deadline
            if self.workers == 1:
                self._replies[message.metadata.message_id] = self._deliver(message)
            else:  # the reply's id now, as one process numbers them
                delivered.append((message, self._new_id()))
        if delivered:
            self._deliver_in_workers(delivered)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None):
        return self.pull_messages(self.push_messages(messages))

    def _deliver(self, message: Message) -> Message:
        reply = self._answer(message)
        reply.metadata.__dict__["_message_id"] = self._new_id()
        if self.on_reply is not None:
            self.on_reply(reply)
        return copied(reply)

    def _answer(self, message: Message) -> Message:
        context = self.contexts.get(message.metadata.dst_node_id)
        if context is None:
            return Message(Error(code=CLIENT_APP_ERROR, reason="unknown node"), reply_to=message)
        try:
            return self.client_app(message, context)
        except Exception as exc:  # noqa: BLE001 - a client's failure is a reply, not a crash
            return Message(
                Error(code=CLIENT_APP_ERROR, reason=f"{type(exc).__name__}: {exc}"),
                reply_to=message,
            )

    def _deliver_in_workers(self, delivered: list[tuple[Message, str]]) -> None:
        """Each message answered by its merchant's worker; replies kept in the order asked.
        Pickling stands in for the copies (a worker never shares an object with this one)."""
        if not self._pipes:
            self._start_workers()
        batches: list[list[Message]] = [[] for _ in self._pipes]
        for message, _ in delivered:
            batches[self._worker_of(message.metadata.dst_node_id)].append(message)
        for pipe, batch in zip(self._pipes, batches, strict=True):
            if batch:
                pipe.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        answered = [iter(self._receive(w) if b else ()) for w, b in enumerate(batches)]
        for message, reply_id in delivered:
            reply = next(answered[self._worker_of(message.metadata.dst_node_id)])
            reply.metadata.__dict__["_message_id"] = reply_id
            if self.on_reply is not None:
                self.on_reply(reply)
            self._replies[message.metadata.message_id] = reply

    def _worker_of(self, node_id: int) -> int:
        return node_id % self.workers

    def _receive(self, worker: int) -> list[Message]:
        try:
            return pickle.loads(self._pipes[worker].recv_bytes())
        except EOFError:
            raise RuntimeError(f"simulated merchants' worker {worker} stopped") from None

    def _start_workers(self) -> None:
        # Forked: each worker starts with this process's modules, client app and contexts.
        fork = multiprocessing.get_context("fork")
        for _ in range(self.workers):
            parent, child = fork.Pipe()
            process = fork.Process(target=self._serve, args=(child,), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)

    def _serve(self, pipe) -> None:
        """A worker's loop: answer each batch of messages in order until told to stop."""
        from threadpoolctl import threadpool_limits

        for other in self._pipes:  # the earlier workers' ends, inherited: theirs alone
            other.close()
        threadpool_limits(1)  # the workers share the cores; a product's bits do not change
        with contextlib.suppress(EOFError):  # EOF: the run's process went away
            while (data := pipe.recv_bytes()) != b"":
                replies = [self._answer(message) for message in pickle.loads(data)]
                pipe.send_bytes(pickle.dumps(replies, protocol=pickle.HIGHEST_PROTOCOL))

    def close(self) -> None:
        """Stop the workers (each ends its loop; their nodes go with them)."""
        pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send_bytes(b"")
            pipe.close()
        processes, self._processes = self._processes, []
        for process in processes:
            process.join(timeout=_WORKER_STOP_S)
            if process.is_alive():
                process.kill()


def copied(message: Message) -> Message:
    """An independent copy of ``message``, as a serializing transport would deliver it.

    Every record (and every ``Array`` object) is new, so mutating the copy's content never
    touches the original; the arrays' bytes, immutable, are shared, so it is much cheaper
    than ``copy.deepcopy`` (BENCHMARKS.md, "Engineering notes").
    """
    metadata = copy.copy(message.metadata)
    if message.has_error():
        return Message(error=copy.copy(message.error), metadata=metadata)
    return Message(content=_copy_value(message.content), metadata=metadata)


def _copy_value(value):
    if isinstance(value, TypedDict):  # RecordDict, ArrayRecord, ConfigRecord, MetricRecord
        new = object.__new__(type(value))
        new.__dict__.update(value.__dict__)
        new.__dict__["_data"] = {k: _copy_value(v) for k, v in value.__dict__["_data"].items()}
        return new
    if isinstance(value, Array):
        new = object.__new__(Array)
        new.__dict__.update(value.__dict__)
        return new
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    return copy.deepcopy(value)  # lists in a ConfigRecord, anything unforeseen


def run_inprocess(
    server_app: ServerApp,
    client_app: ClientApp,
    *,
    num_nodes: int,
    run_config: dict,
    node_config: Callable[[int], dict] | None = None,
    on_reply: Callable[[Message], None] | None = None,
    dropout: float = 0.0,
    workers: int = 1,
) -> InProcessGrid:
    """Run ``server_app`` to completion against ``num_nodes`` in-process clients (split
    over ``workers`` forked processes when more than one)."""
    run = Run.create_empty(run_id=1)
    run.override_config = dict(run_config)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = (
        run.run_id,
        SUPERLINK_NODE_ID,
        1,
    )
    grid = InProcessGrid(
        client_app, num_nodes, run=run, node_config=node_config, on_reply=on_reply,
        dropout=dropout, seed=max(int(run_config.get("seed", 0)), 0), workers=workers,
    )  # fmt: skip
    context = Context(
        run_id=run.run_id,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    try:
        with _fewer_collections():
            server_app(grid, context)
    finally:
        grid.close()
    return grid


@contextlib.contextmanager
def _fewer_collections():
    """Python's cyclic garbage collector, tuned for one simulated federation.

    Thousands of merchants in one process keep hundreds of thousands of objects alive,
    and every full collection walks all of them (and every module's objects). Objects
    from before the run are frozen (never scanned, nothing there is the run's garbage)
    and the young generation is collected every 10,000 allocations instead of 700, so
    full collections rarely trigger. Nothing is computed differently; both are undone
    when the run ends.
    """
    threshold, caller_froze = gc.get_threshold(), gc.get_freeze_count() > 0
    gc.freeze()
    gc.set_threshold(_YOUNG_COLLECTION_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if not caller_froze:  # a caller's own frozen objects stay frozen
            gc.unfreeze()
