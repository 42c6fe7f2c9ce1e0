"""Checking merchants' replies and summing the ones that pass.

A reply is rejected — with a reason naming the node and the field — if any part is
missing, of the wrong shape or type, not finite, or implausible for the declared noise.
One broken or hostile merchant costs its own contribution, never the round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedseg.server.transport import Reply, RoundLog


class RoundFailed(RuntimeError):
    """Too few valid replies: the round releases nothing."""


@dataclass(frozen=True)
class ReplySpec:
    """What a valid reply holds: part name → shape, and the noise each part carries."""

    shapes: Mapping[str, tuple[int, ...]]
    sigmas: Mapping[str, float]  # per-client noise std of each part (0 if none)
    max_norm: float = float("inf")  # L2 bound of one customer's vector (for sums)

    def expected_bytes(self) -> int:
        return sum(8 * int(np.prod(s)) for s in self.shapes.values())


def check_reply(reply: Reply, spec: ReplySpec) -> str | None:
    """None if the reply is usable, else the reason it is not."""
    if reply.error is not None:
        return f"node {reply.node_id}: error reply: {reply.error}"
    if reply.size_bytes > 2 * spec.expected_bytes() + 4096:
        return f"node {reply.node_id}: payload of {reply.size_bytes} bytes, expected about {spec.expected_bytes()}"
    payload = reply.payload or {}
    for name, shape in spec.shapes.items():
        value = payload.get(name)
        if not isinstance(value, np.ndarray):
            return f"node {reply.node_id}: field {name!r} missing or not an array"
        if value.dtype.kind != "f":
            return f"node {reply.node_id}: field {name!r} has dtype {value.dtype}, expected float"
        if value.shape != tuple(shape):
            return f"node {reply.node_id}: field {name!r} has shape {value.shape}, expected {tuple(shape)}"
        if not np.all(np.isfinite(value)):
            return f"node {reply.node_id}: field {name!r} has NaN or infinite values"
    return _implausible(reply.node_id, payload, spec)


def _implausible(node_id: int, payload: Mapping, spec: ReplySpec) -> str | None:
    """Counts below what noise can explain, or sums longer than the counts allow."""
    if "counts" not in spec.shapes:
        return None
    slack_counts = 6.0 * spec.sigmas.get("counts", 0.0)
    counts = payload["counts"]
    if np.any(counts < -slack_counts - 1e-9):
        return f"node {node_id}: field 'counts' is negative beyond the noise ({counts.min():.3g})"
    if "sums" in spec.shapes and np.isfinite(spec.max_norm):
        sums = payload["sums"]
        dim = sums.shape[-1]
        limit = spec.max_norm * (np.maximum(counts, 0) + slack_counts)
        limit = limit + 6.0 * spec.sigmas.get("sums", 0.0) * np.sqrt(dim) + 1e-9
        if np.any(np.linalg.norm(sums, axis=-1) > limit):
            return f"node {node_id}: field 'sums' is larger than its counts allow"
    return None


@dataclass(frozen=True)
class Aggregate:
    sums: dict[str, np.ndarray]
    log: RoundLog


def aggregate_plain(
    task: str,
    asked: Sequence[int],
    replies: Sequence[Reply],
    spec: ReplySpec,
    *,
    min_clients: int,
) -> Aggregate:
    """Sum every valid reply; raise ``RoundFailed`` if fewer than ``min_clients`` remain."""
    log = RoundLog(task=task, asked=tuple(asked))
    answered = {r.node_id for r in replies}
    for node_id in asked:
        if node_id not in answered:
            log.rejected[node_id] = f"node {node_id}: no reply before the deadline"
    totals = {name: np.zeros(shape) for name, shape in spec.shapes.items()}
    contributors = []
    for reply in replies:
        log.bytes_received += reply.size_bytes
        reason = check_reply(reply, spec)
        if reason is not None:
            log.rejected[reply.node_id] = reason
            continue
        for name in totals:
            totals[name] += reply.payload[name]
        contributors.append(reply.node_id)
    log.contributors = tuple(contributors)
    if len(contributors) < min_clients:
        reasons = list(log.rejected.values())
        more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        raise RoundFailed(
            f"{task}: only {len(contributors)} valid replies, at least {min_clients} needed; "
            f"nothing is released. Rejected: {'; '.join(reasons[:3])}{more}"
        )
    return Aggregate(sums=totals, log=log)
