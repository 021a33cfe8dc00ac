"""The registry and event-log actors answer only Solo's own components (the control secret).

Anyone who can reach Ray can look the detached actors up by name; without the secret every method
is refused, except the registry's `resolve` (hosts call it with their ticket) and `ping`.
"""
from __future__ import annotations

import stat

import pytest
import ray

from solo import PermissionDenied
from solo.registry.actor import REGISTRY_NAME
from solo.runtime.event_log_actor import EVENT_LOG_NAME
from solo.security.control import CONTROL_SECRET_FILE
from tests.conftest import EXAMPLES

REFUSED = "only Solo's own components may call the"


def refused(ref) -> str:
    """The PermissionDenied message a call ended with (and fail if it was answered)."""
    with pytest.raises(ray.exceptions.RayTaskError) as caught:
        ray.get(ref, timeout=30)
    cause = caught.value.cause
    assert isinstance(cause, PermissionDenied), repr(cause)
    return cause.message


def actors(solo):
    namespace = solo.supervisor.config.namespace
    return ray.get_actor(REGISTRY_NAME, namespace=namespace), ray.get_actor(EVENT_LOG_NAME, namespace=namespace)


def test_the_control_secret_is_private_to_the_data_directory(solo):
    path = solo.supervisor.config.data_dir / CONTROL_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == solo.supervisor.control_secret


def test_the_registry_refuses_callers_without_the_secret(solo, alice, name):
    from solo.core.spec import ServiceSpec

    alice.deploy(EXAMPLES / "echo.py", name)
    registry, _ = actors(solo)
    spec = ServiceSpec(name=name + "-x", source=(EXAMPLES / "echo.py").read_text(), filename="echo.py")
    attempts = {
        "deploy": registry.deploy.remote("alice", spec, False, {}),
        "stop": registry.stop.remote("alice", name, True, {}),
        "list": registry.list.remote("alice"),
        "get": registry.get.remote("alice", name),
        "wait_routes": registry.wait_routes.remote(0, 0.1),  # every route with its host key
        "grant": registry.grant.remote("alice", name, "bob", {}),
        "grants": registry.grants.remote("alice"),
        "discover": registry.discover.remote("alice", "alice", name, {}),
        "register": registry.register.remote("alice", "x", "", "1", "127.0.0.1:1", {}, 30.0, {}),
        "swap": registry.swap.remote("alice", name, "x = 1\n", "echo.py", "", "", 0.0, {}),
        "shutdown": registry.shutdown.remote(),
        "start": registry.start.remote(),
    }
    for method, ref in attempts.items():
        assert REFUSED + " registry" in refused(ref), method
    wrong = "0" * 64
    assert REFUSED in refused(registry.list.remote(wrong, "alice"))
    assert REFUSED in refused(registry.wait_routes.remote(wrong, 0, 0.1))
    # the actor's own helpers are no methods of the Ray actor (Ray would run any method by name)
    for helper in ("_ticket", "_commit", "_stop_host", "_crashed", "_write_own"):
        assert not hasattr(registry, helper), helper
    # open: ping, and resolve (its host ticket is checked instead)
    assert ray.get(registry.ping.remote(), timeout=30) is True
    assert "was not loaded with the service" in refused(registry.resolve.remote("alice", name, "solo-host-x", "0" * 64,
                                                                                "alice", name))
    # nothing happened: the service still runs, nothing was deployed
    assert alice.call(name, "echo", "still here") == "still here"
    assert {s["name"] for s in alice.list()} >= {name} and name + "-x" not in {s["name"] for s in alice.list()}
    alice.stop(name, remove=True)


def test_the_event_log_refuses_callers_without_the_secret(solo, operator):
    from solo.events import read_events

    _, events = actors(solo)
    before = read_events(solo.supervisor.config.data_dir).column("id").to_pylist()[-1]
    forged = [{"tenant": "alice", "type": "token.revoked", "subject": "x", "payload": "not json"}]
    for method, ref in {"append": events.append.remote(forged), "since": events.since.remote(0, 10, 0.0),
                        "status": events.status.remote(), "last_id": events.last_id.remote(),
                        "close": events.close.remote()}.items():
        assert REFUSED + " event log" in refused(ref), method
    assert REFUSED in refused(events.append.remote("f" * 64, forged))
    for helper in ("_maintain", "_commit_loop", "_checkpointed"):
        assert not hasattr(events, helper), helper
    assert read_events(solo.supervisor.config.data_dir, min_id=before + 1, type="token.revoked").num_rows == 0
    # Solo's own paths still work: the registry appends, the gateway reads the log
    assert operator.whoami()["operator"]
    with_secret = ray.get(events.status.remote(solo.supervisor.control_secret), timeout=30)
    assert with_secret["last_id"] >= before and not with_secret["failure"]


def test_solo_s_own_paths_keep_working(solo, alice, name):
    """The gateway (deploy, call, routes, events) and the registry's appends all carry the secret."""
    alice.deploy(EXAMPLES / "counter.py", name)
    assert alice.call(name, "incr") == 1
    alice.grant(name, "bob")
    assert alice.grants()["given"] == [{"service": name, "to_tenant": "bob"}]
    assert [e["type"] for e in alice.events(subject=name)][:2] == ["service.deploying", "service.started"]
    alice.stop(name, remove=True)
