"""The operator's calls to a SuperLink's Control API, made from this process.

What ``flwr supernode register``, ``flwr run`` and ``flwr ls`` send, through Flower's own
Control API client and requests, without a ``flwr`` process per command: each of those
starts Python and imports Flower's CLI again (about 1.3 s of CPU), which made registering
three merchants and watching one run cost more than the run itself on a shared machine.
The ``flwr`` CLI stays the operator's tool (docs/operator.md); this is the same request.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

from flwr.cli.auth_plugin import NoOpCliAuthPlugin
from flwr.cli.build import build_fab_from_disk
from flwr.cli.config_utils import load_and_validate
from flwr.cli.supernode.register import try_load_public_key
from flwr.cli.typing import SuperLinkConnection
from flwr.cli.utils import init_http_client_from_connection
from flwr.common.config import get_metadata_from_config
from flwr.common.constant import FAB_CONFIG_FILE
from flwr.common.serde import fab_to_proto, run_from_proto
from flwr.proto.control_pb2 import (  # pylint: disable=E0611
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
)
from flwr.supercore.fab import Fab


class ControlError(RuntimeError):
    """The SuperLink refused or could not answer a Control API request."""


class OperatorControl:
    """One SuperLink's Control API, over TLS with its CA (or insecure), no account login."""

    def __init__(self, address: str, *, ca_cert: Path | None, insecure: bool = False) -> None:
        self.connection = SuperLinkConnection(
            name="fedseg-local",
            address=address,
            root_certificates=None if ca_cert is None else str(Path(ca_cert).resolve()),
            insecure=insecure,
        )

    def _client(self):
        # A local SuperLink without account authentication: Flower's no-op plugin, so no
        # credential store under the caller's FLWR_HOME is read. Flower's CLI prints which
        # SuperLink it uses; not here.
        with contextlib.redirect_stdout(io.StringIO()):
            return init_http_client_from_connection(
                self.connection, auth_plugin=NoOpCliAuthPlugin(self.connection.address)
            )

    def _call(self, method: str, request):
        client = self._client()
        try:
            return getattr(client, method)(request)
        except Exception as exc:  # noqa: BLE001 - Flower raises transport and status errors
            raise ControlError(f"{method}: {exc}") from exc
        finally:
            client.close()

    def register_node(self, public_key: Path) -> int:
        """``flwr supernode register PUBLIC_KEY``: the SuperLink's node id for this key."""
        key = try_load_public_key(Path(public_key))  # OpenSSH text to the bytes Flower sends
        reply = self._call("RegisterNode", RegisterNodeRequest(public_key=key))
        if not reply.node_id:
            raise ControlError(f"RegisterNode: {public_key} was not registered")
        return int(reply.node_id)

    def start_run(self, app_dir: Path) -> int:
        """``flwr run APP_DIR``: the FAB built from the app project, submitted; its run id."""
        config, _ = load_and_validate(Path(app_dir) / FAB_CONFIG_FILE)
        if config is None:
            raise ControlError(f"StartRun: {app_dir} is not a valid Flower app project")
        fab_bytes = build_fab_from_disk(Path(app_dir))
        fab_id, fab_version = get_metadata_from_config(config)
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        reply = self._call("StartRun", StartRunRequest(fab=fab_to_proto(fab)))
        if not reply.HasField("run_id"):
            raise ControlError(f"StartRun: {fab_id} {fab_version} was not started")
        return int(reply.run_id)

    def run_status(self, run_id: int) -> str:
        """``flwr ls``'s status of one run: ``pending``, ..., ``finished:completed``."""
        reply = self._call("ListRuns", ListRunsRequest(run_id=run_id))
        for proto in reply.run_dict.values():
            status = run_from_proto(proto).status
            return f"{status.status}:{status.sub_status}" if status.sub_status else status.status
        raise ControlError(f"ListRuns: no run {run_id}")
