"""Checking merchants' replies and summing the ones that pass.

A reply is rejected — with a reason naming the node and the field — if any part is
missing, of the wrong shape or type, not finite, too large, or implausible for the
declared noise (rules in ``fedseg.server.validation``). A node that did not answer
before the deadline is counted as late. One broken, slow or hostile merchant costs its
own contribution, never the round; below ``min_clients`` valid replies the round fails
and releases nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from fedseg.server.transport import Reply, RoundLog
from fedseg.server.validation import LATE_MARK, ReplySpec, check_reply, oversized

__all__ = [
    "LATE",
    "Aggregate",
    "ReplySpec",
    "RoundFailed",
    "aggregate_plain",
    "check_reply",
    "oversized",
    "screen_replies",
]

LATE = LATE_MARK


class RoundFailed(RuntimeError):
    """Too few valid replies: the round releases nothing."""


@dataclass(frozen=True)
class Aggregate:
    """Summed statistics, who contributed, and the noise the sums carry.

    ``noise_share`` is each contributor's share of a full noise draw (1 with local noise);
    ``noise_sigmas`` (set by the round) is the noise std of each summed part; ``sizes``
    (histogram rounds seen reply by reply) each contributor's noisy customer count.
    """

    sums: dict[str, np.ndarray]
    log: RoundLog
    noise_share: float = 1.0
    noise_sigmas: dict[str, float] = field(default_factory=dict)
    sizes: dict[int, float] = field(default_factory=dict)


def screen_replies(
    task: str, asked: Sequence[int], replies: Sequence[Reply], spec: ReplySpec
) -> tuple[list[Reply], RoundLog]:
    """The valid replies (one per asked node) and a log naming every node left out, and why."""
    log = RoundLog(task=task, asked=tuple(asked))
    asked_set = set(asked)
    valid: list[Reply] = []
    seen: set[int] = set()
    for reply in replies:
        log.bytes_received += max(int(reply.size_bytes), 0)
        if reply.node_id not in asked_set:
            continue  # nobody asked this node: its reply carries no weight and no say
        if reply.node_id in seen:
            log.rejected[reply.node_id] = f"node {reply.node_id}: field 'node_id' answered twice"
            valid = [r for r in valid if r.node_id != reply.node_id]
            continue
        seen.add(reply.node_id)
        reason = check_reply(reply, spec)
        if reason is not None:
            log.rejected[reply.node_id] = reason
        else:
            valid.append(reply)
    for node_id in asked:
        if node_id not in seen:
            log.rejected[node_id] = f"node {node_id}: {LATE}"
    log.contributors = tuple(r.node_id for r in valid)
    return valid, log


def require_quorum(task: str, log: RoundLog, *, min_clients: int) -> None:
    """Raise ``RoundFailed`` (nothing released) if fewer than ``min_clients`` contributed."""
    if len(log.contributors) >= min_clients:
        return
    reasons = list(log.rejected.values())
    more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    raise RoundFailed(
        f"{task}: only {len(log.contributors)} valid replies, at least {min_clients} needed; "
        f"nothing is released. Rejected: {'; '.join(reasons[:3])}{more}"
    )


def aggregate_plain(
    task: str,
    asked: Sequence[int],
    replies: Sequence[Reply],
    spec: ReplySpec,
    *,
    min_clients: int,
) -> Aggregate:
    """Sum every valid reply; raise ``RoundFailed`` if fewer than ``min_clients`` remain."""
    valid, log = screen_replies(task, asked, replies, spec)
    require_quorum(task, log, min_clients=min_clients)
    totals = {name: np.zeros(shape) for name, shape in spec.shapes.items()}
    for reply in valid:
        for name in totals:
            totals[name] += reply.payload[name]
    return Aggregate(sums=totals, log=log, sizes=merchant_sizes(valid, spec))


def merchant_sizes(valid: Sequence[Reply], spec: ReplySpec) -> dict[int, float]:
    """Each merchant's noisy customer count, read off its feature histograms (the mean of
    their row totals); empty for other rounds."""
    if not spec.equal_row_totals:
        return {}
    return {r.node_id: float(np.asarray(r.payload["counts"]).sum(axis=1).mean()) for r in valid}
