"""Configuration reload without a restart (`solo config reload`, SIGHUP) and `solo config show`, from the outside.

A Solo of its own on the session's Ray, started from a TOML file and flags the way `solo up` is; each test
rewrites the file, reloads, and checks what the change does (calls shed at the new rate, a deploy past the new
quota refused, the event log's retention, a removed egress destination refused to a running service). Then
`solo up --foreground --gateway-processes 2` in its own process: SIGHUP, both processes applying a reload, the CLI.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib

import grpc
import pytest

from solo import SoloClient
from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from solo.config_reload import ConfigSource, toml_text
from solo.errors import FailedPrecondition, InvalidRequest, Overloaded, PermissionDenied
from solo.gateway.group import GROUP_FILE, GroupFile
from tests.conftest import EXAMPLES, source, tcp_echo_servers, wait_for

ECHO = EXAMPLES / "echo.py"
FETCH = source("""
    import socket

    class Fetch:
        def fetch(self, port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    conn.sendall(b"ping")
                    return {"ok": conn.recv(100).decode()}
            except OSError as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}
""")


@pytest.fixture(scope="module")
def ports():
    with tcp_echo_servers(2) as ports:
        yield ports


def base(ports) -> dict:
    """The file's sections at the start of every test."""
    return {"limits": {"tenant_rates": {"ratey": {"rate_per_second": 1000, "burst": 1000}}},
            "quotas": {"tenants": {"quotay": {"max_services": 5}}},
            "runtime": {"tenant_egress": {"alice": [f"127.0.0.1:{p}" for p in ports]}, "max_restarts": 3},
            "events": {"retention_days": 0}}


def write(path, sections: dict) -> None:
    path.write_text(toml_text(sections))


@pytest.fixture(scope="module")
def reload_solo(solo, ports, tmp_path_factory):
    from solo.runtime.supervisor import ThreadedSolo

    data_dir = tmp_path_factory.mktemp("reload")
    path = data_dir / "conf" / "solo.toml"
    path.parent.mkdir()
    write(path, base(ports))
    source_ = ConfigSource.of(path, data_dir, namespace="solo-reload", gateway__port=0, gateway__metrics_port=0,
                              runtime__warm_pool_size=0, runtime__start_timeout_seconds=30.0,
                              runtime__stop_grace_seconds=2.0, runtime__restart_backoff_seconds=0.2)
    instance = ThreadedSolo(source_.load(), source=source_).start()
    with SoloClient(instance.address, instance.operator_token) as operator:
        tokens = {t: operator.mint_token(t) for t in ("alice", "bob", "ratey", "quotay")}
        tokens["config"] = operator.mint_token("alice", rights=["config", "discover"])  # a tenant, even with the right
        yield instance, path, operator, tokens
    instance.stop()


@pytest.fixture
def setup(reload_solo, ports):
    """(instance, file, operator, tokens); the file and the config in force are back to `base` afterwards."""
    yield reload_solo
    instance, path, operator, _ = reload_solo
    write(path, base(ports))
    operator.reload_config()


def client(instance, token: str) -> SoloClient:
    return SoloClient(instance.address, token)


def shown(operator) -> dict:
    return tomllib.loads(operator.config()["toml"])


def test_show_is_the_config_in_force_with_its_file(setup, ports):
    instance, path, operator, _ = setup
    found = operator.config()
    config = tomllib.loads(found["toml"])
    assert found["path"] == str(path) and found["loaded_at"] > 0
    assert config["limits"]["tenant_rates"]["ratey"] == {"rate_per_second": 1000.0, "burst": 1000.0}
    assert config["namespace"] == "solo-reload" and config["gateway"]["port"] == 0  # the flags of `solo up`


def test_a_tenant_cannot_read_or_reload_the_config(setup):
    instance, _, _, tokens = setup
    for token in (tokens["alice"], tokens["config"]):
        with client(instance, token) as tenant:
            for call in (tenant.config, tenant.reload_config):
                with pytest.raises(PermissionDenied, match="operator"):
                    call()


def test_a_lowered_tenant_rate_sheds_its_calls_at_the_new_rate(setup, ports, name):
    instance, path, operator, tokens = setup
    with client(instance, tokens["ratey"]) as ratey:
        ratey.deploy(ECHO, name)
        assert all(ratey.call(name, "echo", i) == i for i in range(20))  # 1000/s: nothing is shed
        sections = base(ports)
        sections["limits"]["tenant_rates"]["ratey"] = {"rate_per_second": 0.5, "burst": 2}
        write(path, sections)
        result = operator.reload_config()
        assert result["changed"] == ["limits.tenant_rates.ratey"] and result["needs_restart"] == []
        refused = 0
        for i in range(12):
            try:
                ratey.call(name, "echo", i)
            except Overloaded as exc:
                assert "rate limit of this tenant" in exc.message and "0.5 calls/s" in exc.message
                refused += 1
        assert refused >= 6, refused  # a burst of 2, then one call per 2 s (generous: the box may be slow)
        with client(instance, tokens["alice"]) as alice:  # other tenants keep their rate
            alice.deploy(ECHO, name)
            assert all(alice.call(name, "echo", i) == i for i in range(12))
            alice.stop(name, remove=True)
        write(path, base(ports))
        assert operator.reload_config()["changed"] == ["limits.tenant_rates.ratey"]
        wait_for(lambda: ratey.call(name, "echo", 1) == 1, timeout=10, tolerate=(Overloaded,))
        ratey.stop(name, remove=True)


def test_a_lowered_quota_refuses_the_next_deploy(setup, ports, name):
    instance, path, operator, tokens = setup
    with client(instance, tokens["quotay"]) as quotay:
        quotay.deploy(ECHO, name)
        sections = base(ports)
        sections["quotas"]["tenants"]["quotay"] = {"max_services": 1}
        write(path, sections)
        assert operator.reload_config()["changed"] == ["quotas.tenants.quotay"]
        with pytest.raises(Overloaded, match="quota max_services"):
            quotay.deploy(ECHO, f"{name}-2")
        write(path, base(ports))
        operator.reload_config()
        quotay.deploy(ECHO, f"{name}-2")  # allowed again
        for service in (name, f"{name}-2"):
            quotay.stop(service, remove=True)


def test_retention_reaches_the_event_log(setup, ports):
    instance, path, operator, _ = setup
    sections = base(ports)
    sections["events"] = {"retention_days": 2, "tenant_retention_days": {"acme": 0.5}, "retention_bytes": 1 << 30}
    write(path, sections)
    assert operator.reload_config()["changed"] == ["events.retention_bytes", "events.retention_days",
                                                   "events.tenant_retention_days.acme"]
    retention = instance.run(instance.supervisor.event_log_handle().retention())
    assert retention["max_age_seconds"] == 2 * 86_400 and retention["max_bytes"] == 1 << 30
    assert retention["tenant_age_seconds"] == {"acme": 0.5 * 86_400}
    kept = json.loads((instance.supervisor.config.data_dir / "config-reloaded.json").read_text())
    assert kept["config"]["events"]["retention_days"] == 2  # what a restarted event log takes over


def test_a_removed_egress_destination_is_refused_to_a_running_service(setup, ports, name):
    instance, path, operator, tokens = setup
    kept, removed = ports
    with client(instance, tokens["alice"]) as alice:
        alice.deploy(FETCH, name, allow_egress=[f"127.0.0.1:{p}" for p in ports])
        assert alice.call(name, "fetch", removed) == {"ok": "pong:ping"}
        sections = base(ports)
        sections["runtime"]["tenant_egress"] = {"alice": [f"127.0.0.1:{kept}"]}
        write(path, sections)
        assert operator.reload_config()["changed"] == ["runtime.tenant_egress.alice"]
        answer = alice.call(name, "fetch", removed)
        assert "not in this service's allow_egress rules" in answer.get("error", ""), answer
        assert alice.call(name, "fetch", kept) == {"ok": "pong:ping"}
        with pytest.raises(PermissionDenied, match="not allowed for tenant 'alice'"):  # and at deploy
            alice.deploy(FETCH, f"{name}-2", allow_egress=[f"127.0.0.1:{removed}"])
        write(path, base(ports))
        operator.reload_config()
        assert alice.call(name, "fetch", removed) == {"ok": "pong:ping"}  # given back: its spec still asks for it
        alice.stop(name, remove=True)


def test_a_bad_file_changes_nothing_and_says_what_is_wrong(setup, ports):
    instance, path, operator, _ = setup
    before = operator.config()
    path.write_text("[limits\ntenant_rate_per_second = 1\n")
    with pytest.raises(InvalidRequest, match="not valid TOML"):
        operator.reload_config()
    sections = base(ports)
    sections["limits"]["tenant_rate_per_second"] = -5
    sections["quotas"]["max_cpus"] = 2  # valid, but the file as a whole is not: not applied either
    write(path, sections)
    with pytest.raises(InvalidRequest) as err:
        operator.reload_config()
    assert "limits.tenant_rate_per_second" in err.value.message and "greater than or equal to 0" in err.value.message
    assert operator.config() == before
    path.unlink()
    with pytest.raises(FailedPrecondition, match="no longer exists"):
        operator.reload_config()
    assert operator.config() == before


def test_keys_that_cannot_change_live_are_reported_and_kept(setup, ports):
    instance, path, operator, _ = setup
    sections = base(ports)
    sections["runtime"]["max_restarts"] = 9
    sections["gateway"] = {"port": 1234}  # `solo up --port 0` (a flag) wins over the file, now as at the start
    write(path, sections)
    result = operator.reload_config()
    assert result["changed"] == [] and result["needs_restart"] == ["runtime.max_restarts"]
    assert shown(operator)["runtime"]["max_restarts"] == 3 and shown(operator)["gateway"]["port"] == 0


def test_every_reload_is_an_event_tenants_see_only_their_own(setup, ports):
    instance, path, operator, tokens = setup
    sections = base(ports)
    sections["limits"]["tenant_rates"]["alice"] = {"rate_per_second": 900}
    sections["quotas"]["max_cpus"] = 64
    write(path, sections)
    operator.reload_config()
    mine = operator.events(types=["config.reloaded"])  # the operator sees all: the reload's, and alice's share
    last = [e for e in mine if e["tenant"] == "_solo"][-1]
    assert last["payload"]["changed"]["keys"] == ["limits.tenant_rates.alice", "quotas.max_cpus"]
    assert last["payload"]["file"] and last["principal"]
    assert "900" not in json.dumps(last["payload"])  # keys, never values
    with client(instance, tokens["alice"]) as alice, client(instance, tokens["bob"]) as bob:
        theirs = alice.events(types=["config.reloaded"])
        assert theirs and all(e["tenant"] == "alice" for e in theirs)
        assert theirs[-1]["payload"]["changed"]["keys"] == ["limits.tenant_rates.alice"]
        assert bob.events(types=["config.reloaded"]) == []
        with pytest.raises(PermissionDenied):
            bob.events(types=["config.reloaded"], tenant="_solo")


def test_a_registry_and_event_log_restarted_by_ray_keep_the_reloaded_values(setup, ports):
    import ray

    from solo.errors import Unavailable
    from solo.registry.actor import REGISTRY_NAME
    from solo.runtime.event_log_actor import find_event_log

    instance, path, operator, tokens = setup
    sections = base(ports)
    sections["quotas"]["tenants"]["quotay"] = {"max_services": 0}
    sections["events"] = {"retention_days": 4}
    write(path, sections)
    operator.reload_config()
    namespace = instance.supervisor.config.namespace
    registry, handle = instance.supervisor.registry_handle(), instance.supervisor.event_log_handle()
    pid = instance.run(handle.status())["pid"]
    routes = instance.run(registry.wait_routes(0, 0))[0]
    ray.kill(find_event_log(namespace), no_restart=False)
    ray.kill(ray.get_actor(REGISTRY_NAME, namespace=namespace), no_restart=False)
    # both come back as new processes, Ray running their constructors again: a new pid, and route versions
    # that start from the new incarnation's start time
    wait_for(lambda: instance.run(handle.status())["pid"] != pid, timeout=120, tolerate=(Unavailable,))
    wait_for(lambda: instance.run(registry.wait_routes(0, 0))[0] > routes, timeout=120, tolerate=(Unavailable,))
    retention = wait_for(lambda: instance.run(handle.retention()), timeout=120, tolerate=(Unavailable,))
    assert retention["max_age_seconds"] == 4 * 86_400  # not the 0 it was started with
    with client(instance, tokens["quotay"]) as quotay:
        refused = wait_for(lambda: _deploy_refused(quotay), timeout=120, tolerate=(Unavailable,))
    assert "quota max_services" in refused
    assert shown(operator)["quotas"]["tenants"]["quotay"]["max_services"] == 0


def _deploy_refused(tenant) -> str:
    try:
        tenant.deploy(ECHO, "never")
    except Overloaded as exc:
        return exc.message
    raise AssertionError("the deploy went through: the restarted registry forgot the reloaded quota")


# -- `solo up` with two gateway processes: SIGHUP, both apply, the CLI ----------------------------------------------

@pytest.fixture(scope="module")
def up(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("reload-up")
    path = data_dir / "solo.toml"
    write(path, {"gateway": {"metrics_port": -1}, "runtime": {"warm_pool_size": 0},
                 "limits": {"tenant_rates": {"ratey": {"rate_per_second": 1000, "burst": 1000}}}})
    log = open(data_dir.parent / "reload-up.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "solo.cli", "up", "--foreground", "--data-dir", str(data_dir),
                             "--port", "0", "--gateway-processes", "2", "--num-cpus", "2", "--no-example"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state_file = data_dir / "solo.json"

    def started():
        assert proc.poll() is None, (data_dir.parent / "reload-up.log").read_text()[-3000:]
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        return state if state.get("pid") == proc.pid else None
    state = wait_for(started, timeout=180, every=0.2, tolerate=(ValueError,))
    state.update(data_dir=data_dir, path=path, proc=proc, token=open(state["operator_token_file"]).read().strip())
    yield state
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    log.close()


def cli(up, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solo.cli", *args, "--data-dir", str(up["data_dir"])],
                          capture_output=True, text=True, timeout=120)


def config_versions(up) -> list[int]:
    group = GroupFile(up["data_dir"] / GROUP_FILE)
    try:
        return [s.config_version for s in group.slots(2)]
    finally:
        group.close()


def one_call(address: str, token: str, service: str) -> bool:
    """One call on a connection of its own (the kernel picks its gateway process): True if admitted."""
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        pb_stub = solo_pb2_grpc.GatewayStub(channel)
        pb_stub.Invoke(pb.InvokeRequest(service=service, method="echo", json="1"),
                       metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        return True
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        return False
    finally:
        channel.close()


def test_both_gateway_processes_apply_a_reload(up):
    with SoloClient(up["address"], up["token"]) as operator:
        token = operator.mint_token("ratey")
    with SoloClient(up["address"], token) as ratey:
        ratey.deploy(ECHO, "echo")
    assert sum(one_call(up["address"], token, "echo") for _ in range(10)) == 10
    before = config_versions(up)
    write(up["path"], {"gateway": {"metrics_port": -1}, "runtime": {"warm_pool_size": 0},
                       "limits": {"tenant_rates": {"ratey": {"rate_per_second": 0.2, "burst": 2}}}})
    done = cli(up, "config", "reload", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] == ["limits.tenant_rates.ratey"]
    after = config_versions(up)
    assert all(a > b for a, b in zip(after, before, strict=True)) and len(set(after)) == 1, (before, after)
    # each process enforces its share (0.1/s, bursts of 1): over many connections, few calls get through; had one
    # process kept the old rate, about half would
    admitted = sum(one_call(up["address"], token, "echo") for _ in range(30))
    assert admitted <= 8, admitted
    shown_ = json.loads(cli(up, "config", "show", "--json").stdout)
    assert shown_["config"]["limits"]["tenant_rates"]["ratey"] == {"rate_per_second": 0.2, "burst": 2.0}
    assert shown_["path"] == str(up["path"])


def test_sighup_reloads_and_a_bad_file_is_logged(up):
    before = config_versions(up)
    write(up["path"], {"gateway": {"metrics_port": -1}, "runtime": {"warm_pool_size": 0},
                       "quotas": {"max_cpus": 3}})
    os.kill(up["proc"].pid, signal.SIGHUP)
    wait_for(lambda: all(a > b for a, b in zip(config_versions(up), before, strict=True)), timeout=60)
    text = cli(up, "config", "show").stdout
    assert "max_cpus = 3" in text.split("[quotas]", 1)[1].split("[", 1)[0]
    log_path = up["data_dir"].parent / "reload-up.log"
    applied = config_versions(up)
    up["path"].write_text("[quotas]\nmax_cpus = -3\n")
    os.kill(up["proc"].pid, signal.SIGHUP)
    wait_for(lambda: "configuration reload refused" in log_path.read_text(errors="replace"), timeout=60)
    assert "quotas.max_cpus" in log_path.read_text(errors="replace").split("configuration reload refused", 1)[1]
    assert up["proc"].poll() is None and config_versions(up) == applied  # nothing was applied anywhere
    assert "max_cpus = 3" in cli(up, "config", "show").stdout
    for pid in up["gateway_pids"]:  # every gateway process is still there (a HUP would end a process by default)
        assert os.path.exists(f"/proc/{pid}")
