"""Deployment building blocks, each checked against the real thing: TLS handshakes with
Python's ssl, keys loaded the way Flower loads them, command lines parsed by Flower's own
parser, the app project validated by Flower, processes really started and reaped."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fedseg.simulations.deploy.commands import (
    InsecureRefused,
    app_run_config,
    connection_entry,
    node_config_arg,
    superlink_command,
    supernode_command,
    write_app_project,
)
from fedseg.simulations.deploy.demo import contributors_per_round, render_contributions
from fedseg.simulations.deploy.pki import write_node_keypair, write_tls_certificates
from fedseg.simulations.deploy.processes import ProcessGroup, free_port, pid_alive
from flwr.cli.config_utils import load_and_validate
from flwr.common.config import parse_config_args

# -- certificates ---------------------------------------------------------------------


def _handshake(tls_dir: Path, ca_file: Path, server_name: str) -> str:
    """Serve one TLS connection with the SuperLink certificate; return the client's cipher."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tls_dir / "server.crt", tls_dir / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(ca_file))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                tls.sendall(b"x")
                return tls.cipher()[0]
    finally:
        thread.join(timeout=10)
        listener.close()


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_trial_certificate_passes_a_verifying_tls_client(tmp_path, name):
    write_tls_certificates(tmp_path, hosts=["127.0.0.1", "localhost"])
    assert _handshake(tmp_path, tmp_path / "ca.crt", name)


def test_certificate_does_not_verify_under_another_ca_or_name(tmp_path):
    write_tls_certificates(tmp_path / "a", hosts=["127.0.0.1"])
    write_tls_certificates(tmp_path / "b", hosts=["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path / "a", tmp_path / "b" / "ca.crt", "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path / "a", tmp_path / "a" / "ca.crt", "merchant.example")


def test_server_certificate_names_every_host_and_private_keys_are_owner_only(tmp_path):
    files = write_tls_certificates(tmp_path, hosts=["10.0.0.5", "link.example"])
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert names.get_values_for_type(x509.DNSName) == ["link.example"]
    assert files.ca_key.stat().st_mode & 0o777 == 0o600
    assert files.server_key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="at least one host"):
        write_tls_certificates(tmp_path / "none", hosts=[])


def test_node_keypair_is_the_ec_openssh_form_flower_reads(tmp_path):
    keys = write_node_keypair(tmp_path, "m00")
    private = serialization.load_ssh_private_key(keys.private_key.read_bytes(), None)
    public = serialization.load_ssh_public_key(keys.public_key.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp384r1"
    assert private.public_key().public_numbers() == public.public_numbers()
    assert keys.private_key.stat().st_mode & 0o777 == 0o600


# -- TLS by default, insecure only when asked ------------------------------------------


def test_superlink_refuses_to_start_without_tls(tmp_path):
    with pytest.raises(InsecureRefused, match="refusing to start without TLS"):
        superlink_command(port=9093, tls=None)
    tls = write_tls_certificates(tmp_path / "certs")
    tls.server_key.unlink()
    with pytest.raises(InsecureRefused, match="server.key"):
        superlink_command(port=9093, tls=tls)


def test_superlink_command_has_tls_auth_and_no_installs(tmp_path):
    tls = write_tls_certificates(tmp_path)
    command = superlink_command(port=4321, tls=tls)
    assert command[:1] == ["flower-superlink"]
    assert command[command.index("--ssl-certfile") + 1] == str(tls.server_cert)
    assert command[command.index("--port") + 1] == "4321"
    for flag in ("--enable-supernode-auth", "--disable-runtime-dependency-installation"):
        assert flag in command
    assert "--insecure" not in command


def test_insecure_only_by_explicit_flag_and_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        command = superlink_command(port=4321, tls=None, insecure=True)
    assert "--insecure" in command and "--enable-supernode-auth" not in command
    assert "INSECURE" in caplog.text
    with pytest.raises(InsecureRefused):
        supernode_command(superlink="h:1", node_config={}, runtime_port=1, ca_cert=None,
                          auth_private_key=None)  # fmt: skip
    assert connection_entry("h:1", ca_cert=None, insecure=True) == {
        "address": "h:1",
        "insecure": True,
    }
    with pytest.raises(InsecureRefused):
        connection_entry("h:1", ca_cert=None)


def test_cli_superlink_without_certificates_exits_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fedseg.simulations.cli.main", "superlink"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("fedseg: error: superlink: refusing")
    assert "Traceback" not in done.stderr


def test_cli_supernode_insecure_dry_run_warns_and_prints_command(tmp_path):
    from fedseg.privacy.pseudonyms import write_key_file

    pd.DataFrame({"user_id": ["a", "b"], "spend": [1.0, 2.0]}).to_csv(
        tmp_path / "shop.csv", index=False
    )
    write_key_file(tmp_path / "shop.key")
    done = subprocess.run(
        [sys.executable, "-m", "fedseg.simulations.cli.main", "supernode", "--superlink", "h:9093",
         "--data", "shop.csv", "--key-file", "shop.key", "--epsilon-cap", "3",
         "--state-dir", "state", "--insecure", "--dry-run"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "WARNING: --insecure" in done.stderr
    assert "flower-supernode --superlink h:9093" in done.stdout and "--insecure" in done.stdout


# -- node config and app project as Flower parses them ---------------------------------


def test_node_config_round_trips_through_flowers_parser():
    config = {
        "data-path": "/data/my shop/events.csv",
        "merchant-id": "shop-7",
        "epsilon-cap": 2.5,
        "state-dir": r"C:\state",
        "seed": 3,
    }
    assert parse_config_args([node_config_arg(config)]) == config


def test_node_config_rejects_what_flowers_parser_would_mangle():
    with pytest.raises(ValueError, match="quotes"):
        node_config_arg({"data-path": 'a"b.csv'})
    with pytest.raises(ValueError, match="key"):
        node_config_arg({"data path": "x"})


def test_app_project_is_a_valid_flower_app_declaring_every_key(tmp_path):
    config = app_run_config({"k": 3, "out-dir": "/srv/out"})
    path = write_app_project(tmp_path / "app", config)
    loaded, _ = load_and_validate(path, check_module=True)
    declared = loaded["tool"]["flwr"]["app"]["config"]
    assert declared["k"] == 3 and declared["out-dir"] == "/srv/out"
    assert declared["round-timeout"] > 0  # a dead SuperNode never stalls a deployment
    assert {"min-clients", "seed", "init-rounds", "epsilon"} <= set(declared)
    assert loaded["tool"]["flwr"]["app"]["components"]["clientapp"] == "fedseg.client.app:app"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"colour": 1}, "unknown key 'colour'"), ({"round-timeout": 0}, "round-timeout"),
     ({"k": 0}, "k must be")],
)  # fmt: skip
def test_app_run_config_rejects_bad_values_before_submission(overrides, message):
    with pytest.raises(ValueError, match=message):
        app_run_config(overrides)


# -- processes --------------------------------------------------------------------------


def test_stop_all_reaps_children_even_detached_ones(tmp_path):
    group = ProcessGroup(tmp_path / "logs")
    # A parent that forks a child into a session of its own, as Flower's SuperLink does.
    script = (
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "time.sleep(300)"
    )
    service = group.start("parent", [sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while len(group.leftovers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = group.leftovers()
    assert len(pids) == 2 and service.pid in pids
    group.stop_all()
    assert group.leftovers() == []
    assert not any(pid_alive(pid) for pid in pids)


def test_kill_ends_the_whole_process_group_at_once(tmp_path):
    group = ProcessGroup(tmp_path / "logs")
    service = group.start("shell", ["sh", "-c", "sleep 300 & sleep 300 & wait"])
    deadline = time.monotonic() + 30
    while len(group.leftovers()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    group.kill(service)
    assert service.process.returncode == -9
    assert group.leftovers() == []


def test_free_port_can_be_bound():
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_pid_alive_sees_own_process_and_not_a_reaped_one():
    assert pid_alive(os.getpid())
    child = subprocess.Popen(["true"])
    child.wait()
    assert not pid_alive(child.pid)


# -- who contributed to which round ---------------------------------------------------


def test_contributors_per_round_names_merchants_and_the_missing():
    history = [
        {"task": "feature_histograms", "contributors": [11, 22, 33]},
        {"task": "cluster_stats", "contributors": [33, 11]},
    ]
    rows = contributors_per_round(history, {11: "m00", 22: "m01", 33: "m02"})
    assert rows[0]["contributors"] == ["m00", "m01", "m02"] and rows[0]["missing"] == []
    assert rows[1] == {"round": 1, "task": "cluster_stats", "contributors": ["m00", "m02"],
                       "missing": ["m01"]}  # fmt: skip
    assert "| 1 | cluster_stats | m00, m02 | m01 |" in render_contributions(rows)


def test_cli_app_writes_a_project_with_absolute_model_dir(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fedseg.simulations.cli.main", "app", "--out", "fedseg-app",
         "--model-dir", "models", "--k", "7", "--round-timeout", "45"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded, _ = load_and_validate(tmp_path / "fedseg-app" / "pyproject.toml", check_module=False)
    declared = loaded["tool"]["flwr"]["app"]["config"]
    assert declared["k"] == 7 and declared["round-timeout"] == 45.0
    assert declared["out-dir"] == str((tmp_path / "models").resolve())


# -- the SuperNode launcher: one long-lived ClientApp worker, a short poll while busy ----


def test_supernode_runs_through_the_launcher_unless_flowers_own_model_is_asked():
    from fedseg.simulations.backends.supernode import without_isolation

    common = dict(superlink="h:1", node_config={"a": 1}, runtime_port=7, ca_cert=None,
                  auth_private_key=None, insecure=True)  # fmt: skip
    fast = supernode_command(**common)
    assert fast[1:3] == ["-m", "fedseg.simulations.backends.supernode"]
    assert fast[fast.index("--poll-interval") + 1] == "0.2"
    flower = fast[fast.index("--") + 1 :]
    assert flower[0] == "flower-supernode" and flower[flower.index("--port") + 1] == "7"
    plain = supernode_command(**common, worker=False, poll_interval=None)
    assert plain == flower
    assert without_isolation(["--x", "--isolation", "subprocess", "--isolation=process", "-y"]) == [
        "--x",
        "-y",
    ]


def test_busy_polling_shortens_flowers_waits_only_while_a_run_is_active(monkeypatch):
    import inspect

    import flwr.supernode.start_client_internal as internal
    from fedseg.simulations.backends import supernode

    # The waits it replaces are still Flower's: a Flower upgrade that changes them fails here.
    source = inspect.getsource(internal)
    assert f"time.sleep({supernode.FLOWER_IDLE_WAIT_S:g})" in source and "time.sleep(0.5)" in source
    slept = []
    monkeypatch.setattr(supernode.time, "sleep", slept.append)
    clock = supernode.BusyPolling(poll_s=0.2, busy_window_s=60.0)
    clock.sleep(3)  # just started: busy, its run may be submitted already
    clock.last_message -= 61.0
    clock.sleep(3)  # idle: Flower's own wait
    assert slept == [0.2, 3]
    del slept[0]
    pull = clock.wrap_pull(lambda: 42)
    assert not clock.task_ready.is_set()
    assert pull() == 42  # a message arrived: busy, and the worker beside it is woken
    assert clock.task_ready.is_set()
    clock.sleep(3)
    assert slept == [3, 0.2]
    # Waiting for its own ClientApp's reply: woken by it at once, never a 0.5 s sleep.
    clock.reply_pushed.set()
    started = clock.monotonic()
    clock.sleep(0.5)
    assert clock.monotonic() - started < supernode.LOCAL_WAIT_S and not clock.reply_pushed.is_set()
    clock.sleep(0.5)  # no reply yet: at most LOCAL_WAIT_S before the SuperNode looks again
    assert clock.monotonic() - started >= supernode.LOCAL_WAIT_S * 0.9
    assert slept == [3, 0.2]
    assert clock.monotonic() > 0  # everything else is the real time module


@pytest.mark.parametrize(("code", "status", "stderr"), [(0, 0, ""), (3, 3, ""), ("bad", 1, "bad")])
def test_a_stopped_supernode_exits_at_once_with_flowers_code_and_its_logs(code, status, stderr):
    # Flower's exit handlers have run when SystemExit reaches the launcher; the teardown of
    # every loaded module (1-2 s) is skipped, as are atexit hooks, and nothing printed is lost.
    script = (
        "import atexit, logging, sys\n"
        "from fedseg.simulations.backends.supernode import _exit_now\n"
        "atexit.register(print, 'teardown ran')\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "print('buffered', end='')\n"
        "logging.getLogger('fedseg').info('logged')\n"
        f"try:\n    sys.exit({code!r})\nexcept SystemExit as done:\n    _exit_now(done.code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == status
    assert done.stdout.startswith("buffered") and "logged" in done.stdout
    assert "teardown ran" not in done.stdout and done.stderr.strip() == stderr


def test_the_serverapps_last_log_flush_waits_for_the_queue_not_a_fixed_second(monkeypatch):
    import queue

    from fedseg.server import app as server_app

    slept = []
    monkeypatch.setattr(server_app.time, "sleep", slept.append)
    logs = queue.Queue()
    assert server_app._flush_logs(logs, interval=0.2) and slept == [0.2]
    logs.put("line")  # never consumed: gives up at the timeout, as Flower's does
    monkeypatch.setattr(server_app.time, "monotonic", iter(range(100)).__next__)
    assert not server_app._flush_logs(logs, timeout=3.0, interval=0.2)
    # Flower's own: the queue, then 1 s more. A Flower upgrade that changes it fails here.
    import inspect

    from flwr.supercore.logger import flush_logs

    assert "time.sleep(min(1, remaining))" in inspect.getsource(flush_logs)


def test_the_superexec_poll_fedseg_sets_is_the_one_flower_reads(tmp_path, monkeypatch):
    from fedseg.simulations.deploy.commands import SUPERLINK_ENV
    from fedseg.simulations.deploy.local import LocalDeployment
    from flwr.supercore.superexec import run_superexec

    for name, value in SUPERLINK_ENV.items():
        monkeypatch.setenv(name, value)
        assert run_superexec._get_task_poll_interval() == float(value) < 1.0
    assert LocalDeployment(tmp_path).processes.env.items() >= SUPERLINK_ENV.items()
