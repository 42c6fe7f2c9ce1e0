"""How the server reaches merchants, without naming Flower.

The segmentation loop talks to a ``Transport``; the Flower ServerApp provides one over
its ``Grid`` (real SuperLink, Ray simulation or the in-process grid), tests can provide
one over plain ``MerchantNode`` objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Payload = Mapping[str, Any]  # str → numpy array, float, int, str or list of those


@dataclass(frozen=True)
class Reply:
    """One merchant's answer: a payload, or an error saying why there is none."""

    node_id: int
    payload: Payload | None = None
    error: str | None = None
    size_bytes: int = 0


@dataclass
class RoundLog:
    """Who was asked, who answered usefully, and why the others did not count."""

    task: str
    asked: tuple[int, ...]
    contributors: tuple[int, ...] = ()
    rejected: dict[int, str] = field(default_factory=dict)
    bytes_received: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "asked": len(self.asked),
            "contributors": list(self.contributors),
            "rejected": {str(k): v for k, v in self.rejected.items()},
            "bytes_received": self.bytes_received,
            "seconds": self.seconds,
        }


class Transport(Protocol):
    def node_ids(self) -> list[int]: ...

    def request(
        self, task: str, payload: Payload, node_ids: Sequence[int], *, max_bytes: int | None = None
    ) -> list[Reply]:
        """Send ``payload`` to every node; one ``Reply`` per node that answered. Replies
        over ``max_bytes`` come back undecoded (no payload, their size set)."""
        ...

    def request_each(
        self,
        task: str,
        payloads: Mapping[int, Payload],
        *,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> list[Reply]:
        """Send each node its own payload; one ``Reply`` per node that answered within
        ``timeout`` seconds (the transport's own deadline if None); replies over
        ``max_bytes`` come back undecoded."""
        ...
