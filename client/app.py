"""The fedseg Flower ClientApp: a merchant's node, answering the server's requests.

Thin adapter over ``MerchantNode``. Settings and the privacy policy come from the node
config: in deployments the merchant's own (``data-path``, ``key-file``, ``state-dir``,
``epsilon-cap``, ``delta`` … see client/policy.py); in simulations, where Flower's node config
carries ``partition-id``, from the simulator's run config. Only public run parameters
(``as-of``) are ever taken from a deployed run's config.

An error never leaves with its text: the reply carries a fixed code (privacy/protocol/codes.py)
and the details go to this merchant's own log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

from fedseg.client.errors import DataError
from fedseg.client.merchant import MerchantSettings, build_node, simulation_settings
from fedseg.client.node import BadRequest, MerchantNode
from fedseg.client.plan import AcceptedPlan, OutsidePlan, PlanRefused, accept_plan
from fedseg.client.policy import MerchantPolicy
from fedseg.client.secure import secure_step
from fedseg.privacy.ledger import BudgetExceeded, LedgerFileError
from fedseg.privacy.plan import PlanError, RunPlan
from fedseg.privacy.protocol.codes import CODES, reason
from fedseg.privacy.protocol.records import from_records, to_records
from fedseg.privacy.protocol.schema import FeatureSchema, SchemaError, schema_from_toml
from fedseg.privacy.protocol.tasks import MESSAGE_KINDS
from fedseg.privacy.published.identity import fedseg_version, same_major_version
from fedseg.privacy.secagg import SecAggError
from flwr.app import ConfigRecord, Context, Error, Message
from flwr.clientapp import ClientApp

app = ClientApp()
log = logging.getLogger("fedseg.merchant")
PLAN_STATE, SECAGG_STATE, SCHEMA_STATE = "fedseg.plan", "fedseg.secagg", "fedseg.schema"
RUN_SCHEMA = "the run's feature schema"  # where a schema sent with `describe` came from
# One node per merchant setting, run and feature schema, per process.
_nodes: dict[tuple[MerchantSettings, str, str], MerchantNode] = {}
_latest_run = [""]  # the simulation run whose merchants were last added to _nodes

_ERRORS = (
    (BudgetExceeded, "budget_exceeded"),
    (PlanRefused, "plan_refused"),
    (LedgerFileError, "ledger"),
    (DataError, "data_error"),
    ((BadRequest, OutsidePlan, PlanError, SchemaError), "bad_request"),
    (SecAggError, "secagg_protocol"),
)


def settings_from_context(context: Context) -> MerchantSettings:
    node, run = context.node_config, context.run_config
    as_of = str(run.get("as-of", ""))
    if "data-path" not in node and "partition-id" in node:
        return _simulated_settings(int(node["partition-id"]), run)
    data_path = str(node.get("data-path", ""))
    # Node-config `seed` is a deterministic test mode (tests only, never in production):
    # the pseudonym key and the noise seed then follow (seed, merchant-id) as in a simulation.
    test_seed = int(node["seed"]) if "seed" in node else None
    return MerchantSettings(
        data_path=data_path,
        merchant_id=str(node.get("merchant-id", Path(data_path).stem)),
        policy=MerchantPolicy.from_node_config(node),
        as_of=as_of,
        key_file="" if test_seed is not None else str(node.get("key-file", "")),
        state_dir=str(node.get("state-dir", "")),
        simulation_seed=test_seed,
        strict=str(node.get("strict", "false")).lower() in ("1", "true", "yes"),
        secagg_roster=str(node.get("secagg-roster", "")),
        signing_key=str(node.get("signing-key", "")),
    )


class _SimulatedSettings:
    """Simulated merchants' settings, parsed once per run config rather than per message:
    a run's config is the same on every message, so while it compares equal (values and
    their types) each merchant's settings are the ones parsed before."""

    def __init__(self) -> None:
        self.run: list[tuple] = []
        self.by_partition: dict[int, MerchantSettings] = {}

    def __call__(self, partition_id: int, run: Mapping) -> MerchantSettings:
        items = [(key, type(value), value) for key, value in run.items()]
        if items != self.run:
            self.run, self.by_partition = items, {}
        settings = self.by_partition.get(partition_id)
        if settings is None:
            settings = self.by_partition[partition_id] = simulation_settings(partition_id, run)
        return settings


_simulated_settings = _SimulatedSettings()


def _node(context: Context, schema_text: str) -> MerchantNode:
    settings = settings_from_context(context)
    # A simulation's throw-away merchants (ledgers in memory) belong to one run only;
    # a new simulation run in this process replaces the previous one's.
    run = str(context.run_config.get("sim-run-id", ""))
    key = (settings, run, schema_text)
    node = _nodes.get(key)
    if node is None:
        if run and run != _latest_run[0]:  # sweep once per run change, not once per merchant
            for stale in [k for k in _nodes if k[1] and k[1] != run]:
                del _nodes[stale]
            _latest_run[0] = run
        node = _nodes[key] = build_node(settings, _schema(schema_text))
    return node


@functools.lru_cache(maxsize=8)
def _schema(text: str) -> FeatureSchema:
    return schema_from_toml(text, source=RUN_SCHEMA)


def _run_schema(context: Context) -> str:
    """The schema this run's ``describe`` sent (kept in this node's Context), as TOML."""
    kept = context.state.get(SCHEMA_STATE)
    if not isinstance(kept, ConfigRecord):
        raise OutsidePlan("no feature schema in this run: requests come after 'describe'")
    return str(kept["schema"])


def _answer(task: str, message: Message, context: Context) -> Message:
    payload = from_records(message.content)
    if task == "describe":  # the operator's schema: build this merchant's features with it
        text = payload.get("schema")
        if not isinstance(text, str):
            raise SchemaError(f"{RUN_SCHEMA}: 'describe' must carry the schema as TOML text")
        _check_server_version(payload.get("fedseg_version"))
        node = _node(context, text)
        context.state[SCHEMA_STATE] = ConfigRecord({"schema": text})
        return _reply(node.describe(), payload, message)
    node = _node(context, _run_schema(context))
    if task == "plan":
        plan = RunPlan.from_json(payload.get("plan"))
        accepted = accept_plan(plan, node.policy, node.ledger)
        context.state[PLAN_STATE] = ConfigRecord({"state": accepted.to_state()})
        return _reply({"accepted": 1}, payload, message)
    plan = _accepted_plan(context)
    try:
        if "secagg_stage" not in payload:
            return _reply(node.answer(task, payload, plan), payload, message)
        # A secure round spans several messages; its state stays in this node's own Context.
        kept = context.state.get(SECAGG_STATE)
        state = kept["state"] if isinstance(kept, ConfigRecord) else None
        if node.secure_identity is None:
            raise BadRequest("secure aggregation: this merchant has no pinned roster")
        identity = node.secure_identity
        reply, state = secure_step(node, identity, context.node_id, task, payload, state, plan)
        if state is None:
            context.state.pop(SECAGG_STATE, None)
        else:
            context.state[SECAGG_STATE] = ConfigRecord({"state": state})
        return _reply(reply, payload, message)
    finally:  # what the plan has used stays counted, whatever happened
        context.state[PLAN_STATE] = ConfigRecord({"state": plan.to_state()})


def _check_server_version(theirs: object) -> None:
    """Refuse a run of another major fedseg version: its requests and models may mean other
    things. (A server that does not say its version predates the check and is served.)"""
    if theirs is not None and not same_major_version(str(theirs)):
        raise BadRequest(
            f"the server runs fedseg {str(theirs)[:40]}, this merchant fedseg "
            f"{fedseg_version()}: another major version; upgrade one side"
        )


def _accepted_plan(context: Context) -> AcceptedPlan:
    kept = context.state.get(PLAN_STATE)
    if not isinstance(kept, ConfigRecord):
        raise OutsidePlan("no accepted plan in this run: noisy requests come after 'plan'")
    return AcceptedPlan.from_state(str(kept["state"]))


def _reply(values: dict, payload: dict, message: Message) -> Message:
    """The answer, echoing the request id it answers."""
    echo = {"request_id": payload["request_id"]} if "request_id" in payload else {}
    return Message(to_records({**values, **echo}), reply_to=message)


def _handler(task: str):
    def handle(message: Message, context: Context) -> Message:
        try:
            return _answer(task, message, context)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a coded reply
            code = next((name for kind, name in _ERRORS if isinstance(exc, kind)), "internal")
            log.warning(
                "merchant node %s: %s refused (%s): %s", context.node_id, task, code, exc,
                exc_info=code == "internal",
            )  # fmt: skip
            return Message(Error(code=CODES[code][0], reason=reason(code)), reply_to=message)

    handle.__name__ = task
    return handle


for _task, _kind in MESSAGE_KINDS.items():
    getattr(app, _kind)(_task)(_handler(_task))
