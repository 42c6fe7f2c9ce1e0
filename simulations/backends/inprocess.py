"""An in-process Flower ``Grid``: the real ServerApp and ClientApp, no SuperLink, no Ray.

It behaves like a transport where it matters: every message is copied on the way out
and back (client mods mutate content; a real transport serializes), each node keeps
its own ``Context`` across rounds, and a ClientApp exception becomes an ``Error``
reply, as the real runtimes do. Clients run one after another, so runs are
deterministic and cost microseconds per message.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
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
    ) -> None:
        self.client_app = client_app
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
        ids = []
        for message in messages:
            message = copied(message)
            message.metadata.__dict__["_message_id"] = self._new_id()
            ids.append(message.metadata.message_id)
            if self.dropout and self._drops.random() < self.dropout:
                continue  # the merchant went away: no reply, as after a deadline
            self._replies[message.metadata.message_id] = self._deliver(message)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None):
        return self.pull_messages(self.push_messages(messages))

    def _deliver(self, message: Message) -> Message:
        context = self.contexts.get(message.metadata.dst_node_id)
        if context is None:
            return Message(Error(code=CLIENT_APP_ERROR, reason="unknown node"), reply_to=message)
        try:
            reply = self.client_app(message, context)
        except Exception as exc:  # noqa: BLE001 - a client's failure is a reply, not a crash
            reply = Message(
                Error(code=CLIENT_APP_ERROR, reason=f"{type(exc).__name__}: {exc}"),
                reply_to=message,
            )
        reply.metadata.__dict__["_message_id"] = self._new_id()
        if self.on_reply is not None:
            self.on_reply(reply)
        return copied(reply)


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
) -> InProcessGrid:
    """Run ``server_app`` to completion against ``num_nodes`` in-process clients."""
    run = Run.create_empty(run_id=1)
    run.override_config = dict(run_config)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = (
        run.run_id,
        SUPERLINK_NODE_ID,
        1,
    )
    grid = InProcessGrid(
        client_app, num_nodes, run=run, node_config=node_config, on_reply=on_reply,
        dropout=dropout, seed=max(int(run_config.get("seed", 0)), 0),
    )  # fmt: skip
    context = Context(
        run_id=run.run_id,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    with _fewer_collections():
        server_app(grid, context)
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
