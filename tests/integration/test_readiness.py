"""Readiness that means something, against real Solo: /ready and grpc health say ready when the registry, the
routes and the event log are well; the event log's actor killed makes /ready 503 naming it and grpc health
NOT_SERVING (`solo health` exits 1, `solo health --live` 0) until it is back; a stopping gateway is not ready.
/health and /ready answer without the metrics token and name no tenant or service."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc

from solo.cli import main
from solo.registry.rebuild import CHECKPOINT_FILE
from solo.runtime.event_log_actor import find_event_log, get_or_create_event_log
from tests.conftest import EXAMPLES, wait_for


def get(solo, path: str, port: int | None = None) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{port or solo.supervisor.gateway.metrics_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def grpc_status(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def ready_gauge(solo) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{solo.supervisor.gateway.metrics_port}/metrics",
                                  timeout=10).read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("solo_gateway_ready "))


@pytest.fixture(autouse=True)
def no_solo_environment(monkeypatch):
    for name in ("SOLO_ADDRESS", "SOLO_TOKEN", "SOLO_TLS_CA", "SOLO_TLS_CERT", "SOLO_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_ready_when_all_is_well(solo):
    assert get(solo, "/ready") == (200, {"status": "ready", "checks": {
        "registry": {"ok": True}, "routes": {"ok": True}, "event_log": {"ok": True}}})
    assert get(solo, "/health") == (200, {"status": "alive", "checks": {"event_loop": {"ok": True}}})
    for service in ("", "solo.v1.Gateway"):
        assert grpc_status(solo.address, service) == "SERVING"
    assert ready_gauge(solo) == 1
    assert main(["health", "--address", solo.address]) == 0


def test_a_dead_event_log_is_not_ready_until_it_is_back(solo, alice, name, capsys):
    alice.deploy(EXAMPLES / "echo.py", name)  # a tenant and a service the answers must not name
    config = solo.supervisor.config
    ray.kill(find_event_log(config.namespace), no_restart=True)
    try:
        status, body = wait_for(lambda: (lambda a: a if a[0] == 503 else None)(get(solo, "/ready")), 60)
        assert body["status"] == "not ready"
        assert body["checks"]["event_log"] == {
            "ok": False, "reason": "the event log does not answer (restarting or stopped): deploys, stops and swaps "
                                   "fail closed"}
        assert body["checks"]["registry"] == {"ok": True} and body["checks"]["routes"] == {"ok": True}
        assert "alice" not in json.dumps(body) and name not in json.dumps(body)
        assert get(solo, "/health")[0] == 200  # not ready, but alive: a restart would not help
        wait_for(lambda: grpc_status(solo.address) == "NOT_SERVING", 10)
        assert grpc_status(solo.address, "solo.v1.Gateway") == "NOT_SERVING"
        wait_for(lambda: ready_gauge(solo) == 0, 10)
        capsys.readouterr()
        assert main(["health", "--address", solo.address]) == 1
        assert "NOT_SERVING: not ready" in capsys.readouterr().err
        assert main(["health", "--address", solo.address, "--live"]) == 0
        assert alice.call(name, "echo", "still") == "still"  # calls still go through: only operations fail closed
    finally:
        get_or_create_event_log(config.data_dir / "events", config.namespace, config.events,
                                checkpoint_file=config.data_dir / CHECKPOINT_FILE,
                                control_secret=solo.supervisor.control_secret)
    wait_for(lambda: get(solo, "/ready")[0] == 200, 60)
    wait_for(lambda: grpc_status(solo.address) == "SERVING", 10)
    assert grpc_status(solo.address, "solo.v1.Gateway") == "SERVING"
    wait_for(lambda: ready_gauge(solo) == 1, 10)
    assert main(["health", "--address", solo.address]) == 0
    alice.stop(name, remove=True)


def test_health_paths_need_no_token_and_a_stopping_gateway_is_not_ready(solo, tmp_path):
    """A second gateway on the suite's Solo, its /metrics behind a token: the probes still answer; its stop
    drains it (not ready, grpc NOT_SERVING) before it closes."""
    from solo.gateway.server import start_gateway
    from solo.security.keys import KeyRing
    from solo.security.tokens import authenticator

    (tmp_path / "token").write_text("s3cret-metrics-token\n")
    base = solo.supervisor.config
    config = base.model_copy(update={"gateway": base.gateway.model_copy(update={
        "port": 0, "metrics_port": -1, "metrics_token_file": tmp_path / "token", "usage_poll_seconds": 0})})
    gateway = solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                     authenticator(config, KeyRing(base.data_dir / "keys")),
                                     solo.supervisor.event_log_handle()))
    stopped = False
    try:
        port = gateway.metrics_port
        assert get(solo, "/ready", port)[0] == 200
        assert get(solo, "/health", port)[0] == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert refused.value.code == 401  # the metrics themselves still ask for it
        assert grpc_status(gateway.address) == "SERVING"
        solo.run(gateway.stop(0.5))
        stopped = True
        verdict = gateway.health_state.readiness()
        assert not verdict.ok and verdict.checks["draining"] == {"ok": False, "reason": "the gateway is stopping"}
    finally:
        if not stopped:
            solo.run(gateway.stop(0.5))
    assert ready_gauge(solo) in (0, 1)  # the suite's gateway sets it again within a second
    wait_for(lambda: ready_gauge(solo) == 1, 10)
