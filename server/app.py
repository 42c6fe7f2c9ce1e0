"""The fedseg Flower ServerApp: drives the segmentation rounds over the Grid.

Thin adapter: parses run_config once, offers the Grid as a ``Transport`` and writes
``model.json`` and ``report.md``. All algorithm code lives in plain modules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.wire import array_fields, decode_array
from fedseg.server.aggregation import RoundFailed
from fedseg.server.config import SegmentationConfig
from fedseg.server.model import SegmentModel
from fedseg.server.report import render_report
from fedseg.server.robust import RobustAggregator, RobustConfig
from fedseg.server.secure import SecureAggregator
from fedseg.server.segmentation import SegmentationRun
from fedseg.server.transport import Reply
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

if TYPE_CHECKING:
    import pandas as pd

MESSAGE_TYPES = {
    "describe": "query.describe",
    "feature_histograms": "query.feature_histograms",
    "cluster_stats": "train.cluster_stats",
    "square_norm": "query.square_norm",
    "item_popularity": "query.item_popularity",
    "item_gram": "query.item_gram",
    "content_check": "query.content_check",
    "recommender_train": "train.recommender_train",
}

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = SegmentationConfig.from_run_config(context.run_config)
    out_dir = Path(str(context.run_config.get("out-dir", "fedseg-out")))
    started = time.perf_counter()
    transport = GridTransport(grid, timeout=cfg.round_timeout or None)
    transport.wait_for_nodes(expected=cfg.expected_nodes, minimum=cfg.min_clients)
    model = fit_model(transport, cfg)
    model.save(out_dir / "model.json")
    (out_dir / "report.md").write_text(render_report(model))
    context.state["fedseg"] = ConfigRecord({"wall-s": time.perf_counter() - started})


def fit_model(transport, cfg: SegmentationConfig) -> SegmentModel:
    rng = np.random.default_rng(cfg.seed if cfg.seed >= 0 else None)
    ledger = PrivacyLedger(None, epsilon_cap=cfg.epsilon, delta=cfg.delta)
    warm = _read_model(cfg.warm_start)
    statistics = _read_model(cfg.statistics_from)
    catalogue = _read_catalogue(cfg.items) if cfg.recommender else None  # fail before any round
    if catalogue is not None and not _has_attributes(catalogue):
        cfg = replace(cfg, content_share=0.0)  # nothing for the content check to decide
    aggregate = None
    if cfg.secure_agg:
        aggregate = SecureAggregator(
            transport, ledger, distributed=cfg.noise == "distributed",
            dropout_tolerance=cfg.dropout_tolerance, min_clients=cfg.min_clients,
        )  # fmt: skip
    elif cfg.aggregation != "sum":
        robust = RobustConfig(method=cfg.aggregation)
        aggregate = RobustAggregator(transport, min_clients=cfg.min_clients, config=robust)
    run = SegmentationRun(
        transport,
        cfg,
        ledger,
        rng,
        aggregate=aggregate,
        warm_start=warm,
        statistics_from=statistics,
    )
    fitted = run.fit()
    extras = {"marginals": fitted["marginals"]}
    if cfg.recommender:
        extras["recommender"] = _fit_recommender(run, fitted, catalogue)
    return SegmentModel(
        scaling=fitted["scaling"],
        centres_standardized=fitted["centres"],
        segment_sizes=fitted["sizes"],
        privacy=ledger.report(),
        history=fitted["history"],
        extras=extras,
    )


def _read_catalogue(path: str) -> pd.DataFrame:
    from fedseg.server.recommender.rounds import read_catalogue

    return read_catalogue(path)


def _has_attributes(catalogue: pd.DataFrame) -> bool:
    from fedseg.server.recommender.content import catalogue_attributes

    return len(catalogue_attributes(catalogue)[0]) > 0


def _fit_recommender(run: SegmentationRun, fitted: dict, catalogue: pd.DataFrame) -> dict:
    """The recommender rounds after the segmentation, within the same budget and ledger."""
    from fedseg.server.recommender.neural import DPSGD_RELEASE, DpsgdRun
    from fedseg.server.recommender.rounds import RecommenderRun, segmentation_payload

    # Robust aggregators combine cluster estimates only; the recommender sums plainly then.
    secure = run.aggregate if run.cfg.secure_agg else None
    shared = dict(
        aggregate=secure, excluded=run.excluded, request_ids=run.request_ids, history=run.history
    )
    item_ids = catalogue["item_id"].tolist()
    if run.cfg.recommender_model == "dpsgd":
        rounds = DpsgdRun(run.transport, run.cfg, run.ledger,
                          fitted["noise_plan"][DPSGD_RELEASE], **shared)  # fmt: skip
        segmentation = segmentation_payload(fitted["scaling"], fitted["centres"], catalogue)
        model = rounds.fit(segmentation, len(item_ids), run.rng)
        return {**model.to_dict(), "item_ids": item_ids}
    rounds = RecommenderRun(run.transport, run.cfg, run.ledger, fitted["noise_plan"], **shared)
    model = rounds.fit(fitted["scaling"], fitted["centres"], catalogue)
    published = {**model.to_dict(), "item_ids": item_ids}
    if rounds.content_check is not None:
        published["content_check"] = rounds.content_check
    return published


def _read_model(path: str) -> dict | None:
    """An earlier model.json, or None; a missing or unreadable file is a clear error."""
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the earlier model ({exc})") from None


class GridTransport:
    """``Transport`` over a Flower Grid: one message per node, replies decoded."""

    def __init__(self, grid: Grid, *, timeout: float | None) -> None:
        self.grid = grid
        self.timeout = timeout

    def node_ids(self) -> list[int]:
        return list(self.grid.get_node_ids())

    def wait_for_nodes(self, *, expected: int, minimum: int, timeout: float = 120.0) -> None:
        """Nodes register with the SuperLink (or the Ray engine) after the app starts: wait
        for ``expected`` of them, or, if unknown (0), for ``minimum`` and a stable count."""
        deadline, seen = time.monotonic() + timeout, -1
        while True:
            count = len(self.node_ids())
            if (expected and count >= expected) or (
                not expected and count >= minimum and count == seen
            ):
                return
            if time.monotonic() > deadline:
                raise RoundFailed(f"only {count} merchants connected within {timeout:.0f} s")
            seen = count
            time.sleep(0.5)

    def request(
        self,
        task: str,
        payload: Mapping[str, Any],
        node_ids: Sequence[int],
        *,
        max_bytes: int | None = None,
    ) -> list[Reply]:
        content = to_records(payload)
        return self._send(task, {node_id: content for node_id in node_ids}, max_bytes)

    def request_each(self, task: str, payloads: Mapping[int, Mapping[str, Any]]) -> list[Reply]:
        return self._send(task, {node_id: to_records(p) for node_id, p in payloads.items()}, None)

    def _send(
        self, task: str, contents: Mapping[int, RecordDict], max_bytes: int | None
    ) -> list[Reply]:
        messages = [
            Message(content=content, dst_node_id=node_id, message_type=MESSAGE_TYPES[task])
            for node_id, content in contents.items()
        ]
        replies = self.grid.send_and_receive(messages, timeout=self.timeout)
        return [_reply(m, max_bytes) for m in replies]


def _reply(message: Message, max_bytes: int | None) -> Reply:
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Reply(node_id, error=message.error.reason or f"error code {message.error.code}")
    try:
        arrays = message.content.get("arrays")
        size = arrays.count_bytes() if isinstance(arrays, ArrayRecord) else 0
        if max_bytes is not None and size > max_bytes:  # refused undecoded; check_reply says why
            return Reply(node_id, size_bytes=size)
        return Reply(node_id, payload=from_records(message.content), size_bytes=size)
    except (ValueError, TypeError) as exc:
        return Reply(node_id, error=f"undecodable reply: {exc}")


def to_records(payload: Mapping[str, Any]) -> RecordDict:
    """Arrays into an ArrayRecord, scalars and lists into a ConfigRecord."""
    arrays = {k: Array(*array_fields(v)) for k, v in payload.items() if isinstance(v, np.ndarray)}
    config = {k: v for k, v in payload.items() if not isinstance(v, np.ndarray)}
    return RecordDict({"arrays": ArrayRecord(array_dict=arrays), "config": ConfigRecord(config)})


def from_records(records: RecordDict) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for name, record in records.items():
        if isinstance(record, ArrayRecord):
            payload.update({k: decode_array(a) for k, a in record.items()})
        elif isinstance(record, ConfigRecord):
            payload.update(dict(record))
        else:
            raise ValueError(f"unexpected record {name!r}")
    return payload
