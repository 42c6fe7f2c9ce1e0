"""The fedseg Flower ServerApp: drives the segmentation rounds over the Grid.

Thin adapter: parses run_config once, offers the Grid as a ``Transport`` and writes
``model.json`` and ``report.md``. All algorithm code lives in plain modules.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from logging import INFO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fedseg.privacy.ledger import PrivacyLedger
from fedseg.privacy.protocol.records import array_bytes, from_records, to_records
from fedseg.privacy.protocol.run import as_of
from fedseg.privacy.protocol.schema import load_schema
from fedseg.privacy.protocol.tasks import message_type
from fedseg.privacy.published import identity
from fedseg.privacy.published.segments import PublishedSegments
from fedseg.privacy.secagg import load_roster
from fedseg.server import marketing
from fedseg.server.aggregation import RoundFailed
from fedseg.server.config import SegmentationConfig
from fedseg.server.model import SegmentModel
from fedseg.server.privacy_report import privacy_report
from fedseg.server.report import render_report
from fedseg.server.robust import RobustAggregator, RobustConfig
from fedseg.server.rounds import Rounds
from fedseg.server.secure import SecureAggregator
from fedseg.server.segmentation import SegmentationFit, SegmentationRun
from fedseg.server.transport import Reply
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

if TYPE_CHECKING:
    import pandas as pd

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = SegmentationConfig.from_run_config(context.run_config)
    out_dir = Path(str(context.run_config.get("out-dir", "fedseg-out")))
    started = time.perf_counter()
    transport = GridTransport(grid, timeout=cfg.round_timeout or None)
    transport.wait_for_nodes(expected=cfg.expected_nodes, minimum=cfg.min_clients)
    model = fit_model(transport, cfg, on_round=log_round)
    # Simulations run every in-process run as Flower run 1: their own id tells runs apart.
    run_id = str(context.run_config.get("sim-run-id") or context.run_id)
    model.extras.update(identity.stamp(run_id=run_id))
    model.save(out_dir / "model.json")
    (out_dir / "report.md").write_text(render_report(model))
    log(INFO, "fedseg: wrote %s and report.md (ε = %.4g at δ = %g)",
        (out_dir / "model.json").resolve(), model.privacy["epsilon"], model.privacy["delta"])  # fmt: skip
    context.state["fedseg"] = ConfigRecord({"wall-s": time.perf_counter() - started})


def log_round(entry: dict) -> None:
    """One line per round in the run's log (``flwr log RUN_ID`` shows it to the operator)."""
    rejected = entry.get("rejected", {})
    first = f"; first refusal: {next(iter(rejected.values()))}" if rejected else ""
    log(INFO, "fedseg: %s: %d of %d merchants contributed, %d left out, %.2f s%s",
        entry.get("task"), len(entry.get("contributors", [])), entry.get("asked", 0),
        len(rejected), entry.get("seconds", 0.0), first)  # fmt: skip


def fit_model(transport, cfg: SegmentationConfig, *, on_round=None) -> SegmentModel:
    rng = np.random.default_rng(cfg.seed if cfg.seed >= 0 else None)
    ledger = PrivacyLedger(None, epsilon_cap=cfg.epsilon, delta=cfg.delta)
    warm = _read_model(cfg.warm_start.centres_from)
    statistics = _read_model(cfg.warm_start.statistics_from)
    recommender = cfg.recommender
    catalogue = _read_catalogue(recommender.items) if recommender.enabled else None  # fail early
    if catalogue is not None and not _has_attributes(catalogue):  # nothing for the check to decide
        cfg = replace(cfg, recommender=replace(recommender, content_share=0.0))
    schema = load_schema(cfg.features)  # the operator's, before anything is sent
    aggregate = _aggregator(transport, ledger, cfg)
    rounds = Rounds(transport, cfg, ledger, aggregate=aggregate, on_round=on_round)
    run = SegmentationRun(rounds, schema, rng, warm_start=warm, statistics_from=statistics)
    fitted = run.fit()
    extras = {
        **segmentation_extras(fitted),
        "as_of": as_of(cfg.as_of).isoformat(),
        "aggregation": "secure" if cfg.secagg.enabled else cfg.aggregation,
    }
    labels = marketing.rfm_labels(fitted)
    if labels is not None:
        extras["rfm"] = labels
    if cfg.recommender.enabled:
        extras["recommender"] = _fit_recommender(rounds, fitted, catalogue, rng)
    if cfg.lifetime.enabled:
        extras["lifetime_value"] = marketing.fit_lifetime_value(rounds, fitted)
    extras["actions"] = marketing.actions(fitted, extras, catalogue)
    return SegmentModel(
        scaling=fitted.scaling,
        centres_standardized=fitted.centres,
        segment_sizes=fitted.sizes,
        privacy=privacy_report(ledger, built_on=warm or statistics),
        history=rounds.history,
        extras=extras,
    )


def segmentation_extras(fitted: SegmentationFit) -> dict:
    """What model.json carries beside the centres: the schema (and its digest, which
    merchants check before assigning), units, DP profiles, the noise assessment, the
    marginals and the statistics a later run can reuse."""
    extras = {
        "schema": fitted.schema.to_dict(),
        "schema_digest": fitted.schema.digest(),
        "units": {f.name: f.unit for f in fitted.schema.features},
        "marginals": fitted.marginals,
        "statistics": fitted.statistics,
    }
    if fitted.profile_means is not None:
        extras["profile_means"] = fitted.profile_means.tolist()
        extras["profile_noise"] = fitted.profile_noise.tolist()
    if fitted.assessment is not None:
        a = fitted.assessment
        extras["noise"] = {
            "warnings": list(a.warnings),
            "centre_error": a.centre_error.tolist(),
            "relative_error": a.relative_error.tolist(),
            "predicted_cost_increase": a.predicted_cost_increase,
            "nameable": [bool(v) for v in a.nameable],
        }
    return extras


def _aggregator(transport, ledger: PrivacyLedger, cfg: SegmentationConfig):
    secagg = cfg.secagg
    if secagg.enabled:
        if not secagg.roster:
            raise ValueError(
                "secure-agg needs the federation's roster (run config 'secagg-roster')"
            )
        return SecureAggregator(
            transport, ledger, roster=load_roster(secagg.roster),
            distributed=cfg.noise == "distributed", dropout_tolerance=secagg.dropout_tolerance,
            collusion=secagg.collusion, min_clients=cfg.min_clients,
            round_timeout=cfg.round_timeout or None,
        )  # fmt: skip
    if cfg.aggregation != "sum":
        robust = RobustConfig(method=cfg.aggregation)
        return RobustAggregator(transport, min_clients=cfg.min_clients, config=robust)
    return None


def _read_catalogue(path: str) -> pd.DataFrame:
    from fedseg.server.recommender.rounds import read_catalogue

    return read_catalogue(path)


def _has_attributes(catalogue: pd.DataFrame) -> bool:
    from fedseg.server.recommender.content import catalogue_attributes

    return len(catalogue_attributes(catalogue)[0]) > 0


def _fit_recommender(
    rounds: Rounds, fitted: SegmentationFit, catalogue: pd.DataFrame, rng: np.random.Generator
) -> dict:
    """The recommender rounds after the segmentation, within the same budget and ledger."""
    from fedseg.server.recommender.neural import DpsgdRun
    from fedseg.server.recommender.rounds import RecommenderRun, segmentation_payload

    # Robust aggregators combine cluster estimates only; the recommender sums plainly then.
    if not rounds.cfg.secagg.enabled:
        rounds = replace(rounds, aggregate=None)
    item_ids = catalogue["item_id"].tolist()
    if rounds.cfg.recommender.model == "dpsgd":
        segmentation = segmentation_payload(fitted.scaling, fitted.centres, catalogue)
        model = DpsgdRun(rounds).fit(segmentation, len(item_ids), rng)
        return {**model.to_dict(), "item_ids": item_ids}
    recommender = RecommenderRun(rounds)
    model = recommender.fit(fitted.scaling, fitted.centres, catalogue)
    published = {**model.to_dict(), "item_ids": item_ids}
    if recommender.content_check is not None:
        published["content_check"] = recommender.content_check
    return published


def _read_model(path: str) -> dict | None:
    """An earlier model.json, or None; a missing or unreadable file is a clear error."""
    if not path:
        return None
    segments, data = PublishedSegments.load(path)  # one line naming the file and field
    identity.check_identity(data, source=str(path), schema=segments.schema)
    return data


_FIRST_PULL_S, _LAST_PULL_S = 0.01, 0.05  # between pulls for replies (Flower's grid: 3 s)


class GridTransport:
    """``Transport`` over a Flower Grid: one message per node, replies decoded."""

    def __init__(self, grid: Grid, *, timeout: float | None) -> None:
        self.grid = grid
        self.timeout = timeout
        # A real deployment's grid waits seconds between its looks for replies; the others
        # (in-process, Ray) answer at once and keep their own send_and_receive.
        self.deployed = type(grid).__module__ == "flwr.superlink.grid.http_grid"
        if self.deployed:
            _quick_object_retries()
            _prompt_log_flush()

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
            time.sleep(0.1)

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

    def request_each(
        self,
        task: str,
        payloads: Mapping[int, Mapping[str, Any]],
        *,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> list[Reply]:
        contents = {node_id: to_records(p) for node_id, p in payloads.items()}
        return self._send(task, contents, max_bytes, timeout=timeout)

    def _send(
        self,
        task: str,
        contents: Mapping[int, RecordDict],
        max_bytes: int | None,
        *,
        timeout: float | None = None,
    ) -> list[Reply]:
        messages = [
            Message(content=content, dst_node_id=node_id, message_type=message_type(task))
            for node_id, content in contents.items()
        ]
        wait = self.timeout if timeout is None else timeout
        if self.deployed:
            replies = send_and_receive(self.grid, messages, timeout=wait)
        else:
            replies = list(self.grid.send_and_receive(messages, timeout=wait))
        # Summed in the order asked, whatever order they came in: the same model (to the
        # last bit) on every backend and in a deployment.
        asked = {m.metadata.dst_node_id: i for i, m in enumerate(messages)}
        replies.sort(key=lambda r: asked.get(r.metadata.src_node_id, len(asked)))
        return [_reply(m, max_bytes) for m in replies]


def _quick_object_retries() -> None:
    """The SuperLink lists a reply before its sender has uploaded all of the reply's objects;
    Flower's deployment grid then retries an unavailable object after 1 s, 2 s, ... With the
    short poll below that race is common, so retry after 20 ms, at most 0.5 s apart."""
    try:
        from flwr.superlink.grid import http_grid
    except ImportError:  # pragma: no cover - another Flower layout: keep its own retries
        return
    if not isinstance(http_grid.pull_objects, functools.partial):
        http_grid.pull_objects = functools.partial(
            http_grid.pull_objects, initial_backoff=0.02, backoff_cap=0.5
        )


def _prompt_log_flush() -> None:
    """When the ServerApp returns, Flower's ``flush_logs`` waits for the log queue to empty
    and then a fixed 1 s more "for the PushLogs call to complete", before the run's output
    is pushed. Here it waits for the queue and one upload interval; logs are never lost
    either way: Flower joins the uploader, which sends what is left, after the output."""
    try:
        from flwr.common.constant import LOG_UPLOAD_INTERVAL
        from flwr.superlink.runtime import run_serverapp
    except ImportError:  # pragma: no cover - another Flower layout: keep its own wait
        return
    run_serverapp.flush_logs = functools.partial(_flush_logs, interval=LOG_UPLOAD_INTERVAL)


def _flush_logs(log_queue, timeout: float = 3.0, *, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while not log_queue.empty():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    return True


def send_and_receive(grid: Grid, messages: Sequence[Message], *, timeout: float | None):
    """``Grid.send_and_receive`` with a short poll: Flower's deployment grid asks the
    SuperLink for replies every 3 s, which alone made a round of a local deployment last
    seconds. Here the first checks come 10 ms apart, growing to at most 50 ms (one small
    request to the SuperLink each; a round waited up to 0.25 s for its replies before)."""
    pushed = list(grid.push_messages(messages))
    pending = set(pushed)
    deadline = None if timeout is None else time.monotonic() + timeout
    replies: list[Message] = []
    pause = _FIRST_PULL_S
    while True:
        pulled = list(grid.pull_messages([i for i in pushed if i in pending]))
        replies += pulled
        pending -= {m.metadata.reply_to_message_id for m in pulled}
        if not pending or (deadline is not None and time.monotonic() >= deadline):
            return replies
        time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 1.5, _LAST_PULL_S)


def _reply(message: Message, max_bytes: int | None) -> Reply:
    node_id = message.metadata.src_node_id
    if message.has_error():
        return Reply(node_id, error=message.error.reason or f"error code {message.error.code}")
    try:
        size = array_bytes(message.content)
        if max_bytes is not None and size > max_bytes:  # refused undecoded; check_reply says why
            return Reply(node_id, size_bytes=size)
        return Reply(node_id, payload=from_records(message.content), size_bytes=size)
    except (ValueError, TypeError) as exc:
        return Reply(node_id, error=f"undecodable reply: {exc}")
