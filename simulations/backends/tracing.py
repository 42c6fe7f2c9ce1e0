"""``--trace DIR``: every message a client sends, exactly as it goes on the wire, one file each."""

from __future__ import annotations

import itertools
from pathlib import Path

from flwr.app import Message
from flwr.common.serde import message_to_proto


class TraceWriter:
    """Callable for ``InProcessGrid(on_reply=...)``: writes each reply's protobuf bytes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)

    def __call__(self, message: Message) -> None:
        meta = message.metadata
        name = f"{next(self._numbers):06d}-node{meta.src_node_id}-{meta.message_type}.pb"
        (self.directory / name).write_bytes(message_to_proto(message).SerializeToString())
