"""`solo health`, what the KubeRay probes run: the standard grpc.health.v1 Check against a real TLS gateway
(a second gateway on the suite's Solo, with certificates made by `cryptography`), exit 0 only when SERVING."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from grpc_health.v1 import health_pb2

from solo.cli import main
from solo.security.certs import init_ca, issue_server
from solo.security.keys import KeyRing


@pytest.fixture(scope="module")
def tls_gateway(solo, tmp_path_factory):
    from solo.gateway.server import start_gateway
    from solo.security.tokens import authenticator

    directory = tmp_path_factory.mktemp("health-tls")
    init_ca(directory)
    issue_server(directory)
    base = solo.supervisor.config
    config = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0}),
        "tls": base.tls.model_copy(update={"enabled": True, "dir": directory})})
    started = solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                     authenticator(config, KeyRing(base.data_dir / "keys")),
                                     solo.supervisor.event_log_handle()))
    started.ca = directory / "ca.crt"
    yield started
    solo.run(started.stop(0.5))


@pytest.fixture(autouse=True)
def no_solo_environment(monkeypatch):
    for name in ("SOLO_ADDRESS", "SOLO_TOKEN", "SOLO_TLS_CA", "SOLO_TLS_CERT", "SOLO_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)


def health(capsys, *argv) -> tuple[int, str, str]:
    code = main(["health", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_serving_over_tls_exits_zero_like_the_probe(tls_gateway):
    """The probe's exact shape, in its own process: address and CA given, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLO_")}
    done = subprocess.run([sys.executable, "-m", "solo.cli", "health", "--address", f"127.0.0.1:{tls_gateway.port}",
                           "--tls-ca", str(tls_gateway.ca), "--timeout", "5"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"SERVING (127.0.0.1:{tls_gateway.port})"


def test_json_and_the_gateways_own_service_name(tls_gateway, capsys):
    code, out, _ = health(capsys, "--address", f"127.0.0.1:{tls_gateway.port}", "--tls-ca", str(tls_gateway.ca),
                          "--service", "solo.v1.Gateway", "--json")
    assert code == 0
    assert json.loads(out) == {"address": f"127.0.0.1:{tls_gateway.port}", "service": "solo.v1.Gateway",
                               "status": "SERVING", "reason": ""}
    code, out, _ = health(capsys, "--address", f"127.0.0.1:{tls_gateway.port}", "--tls-ca", str(tls_gateway.ca),
                          "--service", "nope", "--json")
    assert code == 1 and json.loads(out)["status"] == "SERVICE_UNKNOWN"


def test_address_and_ca_come_from_solo_json(tls_gateway, tmp_path, capsys):
    """What `solo up --host 0.0.0.0 --tls` writes: the wildcard listen address means this machine."""
    (tmp_path / "solo.json").write_text(json.dumps({
        "address": f"0.0.0.0:{tls_gateway.port}", "tls_ca": str(tls_gateway.ca),
        "operator_token_file": str(tmp_path / "operator.token")}))
    code, out, _ = health(capsys, "--data-dir", str(tmp_path))
    assert code == 0 and out.strip() == f"SERVING (127.0.0.1:{tls_gateway.port})"


def test_a_gateway_that_answers_not_serving_fails_with_one_line(solo, tls_gateway, capsys):
    solo.run(tls_gateway.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
    try:
        code, out, err = health(capsys, "--address", f"127.0.0.1:{tls_gateway.port}", "--tls-ca", str(tls_gateway.ca))
    finally:
        solo.run(tls_gateway.health.set("", health_pb2.HealthCheckResponse.SERVING))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "answers NOT_SERVING" in err


def test_plaintext_against_tls_and_no_gateway_are_unreachable(tls_gateway, tmp_path, capsys):
    code, _, err = health(capsys, "--address", f"127.0.0.1:{tls_gateway.port}", "--data-dir", str(tmp_path),
                          "--timeout", "3")
    assert code == 5 and err.startswith("not serving: ") and err.count("\n") == 1
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    code, out, _ = health(capsys, "--address", f"127.0.0.1:{free}", "--data-dir", str(tmp_path), "--timeout", "3",
                          "--json")
    assert code == 5 and json.loads(out)["status"] == "UNREACHABLE"
    code, _, err = health(capsys, "--data-dir", str(tmp_path))  # no address anywhere
    assert code == 5 and "no Solo to talk to" in err
