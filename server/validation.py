"""Checking one merchant's reply before anything is aggregated.

A reply is rejected — with a reason naming the node and the field — if it is an error,
too large, not a mapping, missing a part, of the wrong shape or type, not finite, or
implausible for the declared noise. The plausibility rules use 6σ of the declared
per-merchant noise around the feasible range, so an honest reply is rejected with
probability below 1e-8 per checked value.

The size rule can run before anything is deserialized: ``oversized`` needs only the
byte count the transport reads off the message (``records.array_bytes``: the lengths
of the packed arrays).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from fedseg.server.transport import Reply

SLACK = 6.0  # plausibility tolerance, in standard deviations of the declared noise
SIZE_FACTOR = 2  # a reply may be at most this many times its expected size (+ headroom)
SIZE_HEADROOM = 4096  # bytes for array headers and small config values
MAX_COUNT = 1e9  # more customers than any one merchant has: a count above is not data
LATE_MARK = "no reply before the deadline"  # the reason given for a node that timed out


@dataclass(frozen=True)
class ReplySpec:
    """What a valid reply holds: part name → shape, and the noise each part carries.

    ``equal_row_totals``: the rows of ``counts`` are histograms of the same customers
    (one count per customer per feature), so their totals agree up to noise.
    """

    shapes: Mapping[str, tuple[int, ...]]
    sigmas: Mapping[str, float]  # per-client noise std of each part (0 if none)
    max_norm: float = float("inf")  # L2 bound of one customer's vector (for sums)
    equal_row_totals: bool = False
    request_id: int | None = None  # the request a reply must say it answers
    # node → (noisy customer count, its noise std) from the feature histograms: a merchant's
    # cluster counts must add up to its own customers, within the noise of both releases.
    sizes: Mapping[int, tuple[float, float]] | None = None

    def expected_bytes(self) -> int:
        return sum(8 * math.prod(s) for s in self.shapes.values())

    def max_bytes(self) -> int:
        """Largest acceptable reply: anything bigger is refused before deserializing."""
        return SIZE_FACTOR * self.expected_bytes() + SIZE_HEADROOM


def oversized(node_id: int, size_bytes: int, spec: ReplySpec) -> str | None:
    """The size rule alone, for a transport to apply before decoding any array."""
    if size_bytes > spec.max_bytes():
        return (
            f"node {node_id}: field 'payload' is {size_bytes} bytes, "
            f"at most {spec.max_bytes()} accepted (expected about {spec.expected_bytes()})"
        )
    return None


def check_reply(reply: Reply, spec: ReplySpec) -> str | None:
    """None if the reply is usable, else the reason it is not (never raises)."""
    node = reply.node_id
    if reply.error is not None:
        return f"node {node}: error reply: {reply.error}"
    reason = oversized(node, reply.size_bytes, spec)
    if reason is not None:
        return reason
    payload = reply.payload
    if not isinstance(payload, Mapping):
        return f"node {node}: field 'payload' is {type(payload).__name__}, expected a mapping"
    # Transports that could not measure the wire size still get the rule, on decoded arrays.
    decoded = sum(v.nbytes for v in payload.values() if isinstance(v, np.ndarray))
    reason = oversized(node, decoded, spec)
    if reason is not None:
        return reason
    reason = _check_keys(node, payload, spec)
    if reason is not None:
        return reason
    for name, shape in spec.shapes.items():
        reason = _check_array(node, name, payload.get(name), tuple(shape))
        if reason is not None:
            return reason
    return _implausible(node, payload, spec) or _size_mismatch(node, payload, spec)


def _check_keys(node: int, payload: Mapping, spec: ReplySpec) -> str | None:
    """The reply answers this request (its echoed id) and holds only the parts asked for."""
    if spec.request_id is not None and payload.get("request_id") != spec.request_id:
        return (
            f"node {node}: field 'request_id' is {payload.get('request_id')!r}, "
            f"this round asked request {spec.request_id} (a replayed or misrouted reply)"
        )
    extra = sorted(set(payload) - set(spec.shapes) - {"request_id"})
    if extra:
        return f"node {node}: field {extra[0]!r} was not asked for"
    return None


def _size_mismatch(node: int, payload: Mapping, spec: ReplySpec) -> str | None:
    """Counts (per cluster, or the one count of the moments) that do not add up to the
    merchant's own noisy customer count from its range histograms."""
    part = next((p for p in ("counts", "count") if p in spec.shapes), None)
    if spec.sizes is None or part is None:
        return None
    if node not in spec.sizes:  # else spoiling its histograms would free its counts
        return (
            f"node {node}: field {part!r} cannot be checked: the merchant's range histograms "
            "gave no usable customer count"
        )
    size, size_sigma = spec.sizes[node]
    counts = np.asarray(payload[part], dtype=np.float64)
    sigma = math.hypot(spec.sigmas.get(part, 0.0) * math.sqrt(counts.size), size_sigma)
    total = float(counts.sum())
    if abs(total - size) > SLACK * sigma + 1e-6 * max(abs(size), 1.0):
        return (
            f"node {node}: field {part!r} adds up to {total:.4g} customers, the merchant's "
            f"histograms say {size:.4g} (more than {SLACK:g}σ apart)"
        )
    return None


def _check_array(node: int, name: str, value: object, shape: tuple[int, ...]) -> str | None:
    if value is None:
        return f"node {node}: field {name!r} is missing"
    if not isinstance(value, np.ndarray):
        return f"node {node}: field {name!r} is {type(value).__name__}, expected an array"
    if value.dtype.kind != "f":
        return f"node {node}: field {name!r} has dtype {value.dtype}, expected float"
    if value.shape != shape:
        return f"node {node}: field {name!r} has shape {value.shape}, expected {shape}"
    if not np.all(np.isfinite(value)):
        return f"node {node}: field {name!r} has NaN or infinite values"
    return None


def _implausible(node: int, payload: Mapping, spec: ReplySpec) -> str | None:
    """Counts below what noise can explain, histograms of different customers, or sums
    longer than the counts allow (each customer's vector has norm ≤ ``max_norm``)."""
    if "count" in spec.shapes:
        return _implausible_moments(node, payload, spec)
    if "counts" not in spec.shapes:
        return None
    sigma_counts = spec.sigmas.get("counts", 0.0)
    counts = np.asarray(payload["counts"], dtype=np.float64)
    if np.any(counts < -SLACK * sigma_counts - 1e-9):
        return f"node {node}: field 'counts' is negative beyond the noise ({counts.min():.3g})"
    if np.any(counts > MAX_COUNT + SLACK * sigma_counts):
        return f"node {node}: field 'counts' is implausibly large ({counts.max():.3g})"
    if spec.equal_row_totals and counts.ndim == 2 and counts.shape[0] > 1:
        totals = counts.sum(axis=1)
        # Two row totals differ by noise of std σ·√(2·bins).
        limit = SLACK * sigma_counts * math.sqrt(2 * counts.shape[1]) + 1e-6 * np.abs(totals).max()
        if totals.max() - totals.min() > limit + 1e-9:
            return (
                f"node {node}: field 'counts' has histograms of different totals "
                f"({totals.min():.6g} to {totals.max():.6g})"
            )
    if "sums" in spec.shapes and math.isfinite(spec.max_norm):
        sums = np.asarray(payload["sums"], dtype=np.float64)
        dim = sums.shape[-1]
        limit = spec.max_norm * (np.maximum(counts, 0) + SLACK * sigma_counts)
        limit = limit + SLACK * spec.sigmas.get("sums", 0.0) * math.sqrt(dim) + 1e-9
        norms = np.linalg.norm(sums, axis=-1)
        if np.any(norms > limit):
            j = int(np.argmax(norms - limit))
            return (
                f"node {node}: field 'sums' is larger than its counts allow "
                f"(row {j}: norm {norms[j]:.3g} > {limit[j]:.3g})"
            )
    return None


def _implausible_moments(node: int, payload: Mapping, spec: ReplySpec) -> str | None:
    """Moments of customers mapped into [-1, 1]^d: every entry of Σu, Σu² and Σuuᵀ is at most
    the count in magnitude (Σu² and the Gram's diagonal are not negative), beyond the noise."""
    sigma_count = spec.sigmas.get("count", 0.0)
    count = float(np.asarray(payload["count"]).ravel()[0])
    if not -SLACK * sigma_count - 1e-9 <= count <= MAX_COUNT + SLACK * sigma_count:
        return f"node {node}: field 'count' is implausible ({count:.3g})"
    for part in ("sum", "square", "second"):
        if part not in spec.shapes:
            continue
        values = np.asarray(payload[part], dtype=np.float64)
        slack = SLACK * (spec.sigmas.get(part, 0.0) + sigma_count) + 1e-9
        low = -max(count, 0.0) - slack if part == "sum" else -slack
        if part == "second":
            low = np.where(np.eye(len(values), dtype=bool), -slack, -max(count, 0.0) - slack)
        if np.any(values > max(count, 0.0) + slack) or np.any(values < low):
            return f"node {node}: field {part!r} is larger than its count allows"
    return None


def left_out_table(history: Sequence[Mapping]) -> str:
    """Markdown table of every node left out of a round (late, failed or rejected), for
    the run's report: node, how many rounds, and the first reason given."""
    rounds: dict[str, list[str]] = {}
    for entry in history:
        for node, reason in entry.get("rejected", {}).items():
            rounds.setdefault(str(node), []).append(f"{entry.get('task', '?')}: {reason}")
    if not rounds:
        return "Every merchant contributed to every round."
    lines = ["| node | rounds left out | late | first reason |", "|---|---|---|---|"]
    for node in sorted(rounds, key=lambda n: (len(n), n)):
        late = sum(LATE_MARK in reason for reason in rounds[node])
        first = rounds[node][0].replace("|", "\\|")
        lines.append(f"| {node} | {len(rounds[node])} | {late} | {first} |")
    return "\n".join(lines)
