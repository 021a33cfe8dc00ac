"""`[gateway] processes = 2`: two gateway processes on one port (SO_REUSEPORT), from the outside.

Starts its own `solo up --foreground --gateway-processes 2` (its own embedded Ray). Which process answered a
call is read from the merged /metrics (every series labelled `gateway_process`), never from the reply.
Each channel here has its own connection (`grpc.use_local_subchannel_pool`), and a connection stays
with the process the kernel gave it, so a channel is "pinned" to one process.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from solo.client import spec_message
from solo.errors import FailedPrecondition
from solo.gateway.group import GROUP_FILE, GroupFile
from solo.gateway.port_lock import claim_port
from tests.conftest import EXAMPLES, wait_for

pytestmark = pytest.mark.slow
ECHO = EXAMPLES / "echo.py"


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("two-gateways")
    (data_dir / "solo.toml").write_text("[gateway]\nmetrics_port = -1\n")
    log = open(data_dir.parent / "two-gateways.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "solo.cli", "up", "--foreground", "--data-dir", str(data_dir),
                             "--port", "0", "--gateway-processes", "2", "--num-cpus", "2", "--no-example"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state_file = data_dir / "solo.json"

    def started():
        assert proc.poll() is None, (data_dir.parent / "two-gateways.log").read_text()[-3000:]
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        return state if state.get("pid") == proc.pid else None
    state = wait_for(started, timeout=180, every=0.2, tolerate=(ValueError,))
    state["data_dir"], state["proc"] = data_dir, proc
    state["token"] = open(state["operator_token_file"]).read().strip()
    op = Pinned(state["address"], state["token"])
    op.deploy("echo")
    op.close()
    yield state
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    log.close()


class Pinned:
    """A channel with its own TCP connection, so all of its calls reach one gateway process."""

    def __init__(self, address: str, token: str):
        self.channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        self.stub = solo_pb2_grpc.GatewayStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    def echo(self, text: str = "hi", service: str = "echo") -> str:
        reply = self.stub.Invoke(pb.InvokeRequest(service=service, method="echo", json=json.dumps(text)),
                                 metadata=self.metadata, timeout=30)
        return json.loads(reply.json)

    def deploy(self, name: str) -> None:
        self.stub.DeployService(pb.DeployServiceRequest(spec=spec_message(ECHO, name)), metadata=self.metadata,
                                timeout=120)

    def call(self, method: str, request, metadata=None):
        return getattr(self.stub, method)(request, metadata=metadata or self.metadata, timeout=30)

    def close(self) -> None:
        self.channel.close()


def calls_by_process(state) -> dict[str, float]:
    """Invoke calls each gateway process has finished, from the merged /metrics."""
    with urllib.request.urlopen(f"http://{state['metrics_address']}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "solo_gateway_calls_total":
                out[sample.labels["gateway_process"]] = out.get(sample.labels["gateway_process"], 0) + sample.value
    return out


def which(state, pinned: Pinned) -> str:
    """The gateway process `pinned`'s connection reaches (one call, and whose counter moved)."""
    before = calls_by_process(state)
    pinned.echo()
    after = calls_by_process(state)
    moved = [p for p in after if after[p] > before.get(p, 0)]
    assert len(moved) == 1, (before, after)
    return moved[0]


def one_on_each(state, token: str | None = None, tries: int = 40) -> dict[str, Pinned]:
    """A pinned channel to process "0" and one to process "1"."""
    found: dict[str, Pinned] = {}
    for _ in range(tries):
        pinned = Pinned(state["address"], state["token"])
        index = which(state, pinned)
        if index in found:
            pinned.close()
        else:
            if token:
                pinned.metadata = (("authorization", f"Bearer {token}"),)
            found[index] = pinned
        if len(found) == 2:
            return found
    raise AssertionError(f"{tries} connections all reached process(es) {sorted(found)}")


def test_calls_over_many_connections_reach_both_processes(group):
    seen = {}
    channels = [Pinned(group["address"], group["token"]) for _ in range(16)]
    try:
        for pinned in channels:
            index = which(group, pinned)
            seen[index] = seen.get(index, 0) + 1
    finally:
        for pinned in channels:
            pinned.close()
    assert set(seen) == {"0", "1"}, seen
    merged = calls_by_process(group)
    assert set(merged) == {"0", "1"}


def test_get_metrics_counts_the_calls_of_every_process(group):
    pinned = one_on_each(group)
    try:
        base = pinned["0"].call("GetMetrics", pb.GetMetricsRequest()).calls
        for p in pinned.values():
            for _ in range(3):
                p.echo()
        for p in pinned.values():  # whichever process answers GetMetrics, it sums both (a sum is reused for 1 s)
            wait_for(lambda p=p: p.call("GetMetrics", pb.GetMetricsRequest()).calls == base + 6, timeout=5)
    finally:
        for p in pinned.values():
            p.close()


def test_a_token_revoked_through_one_process_is_refused_by_the_other(group):
    op = Pinned(group["address"], group["token"])
    minted = op.call("MintToken", pb.MintTokenRequest(tenant="default", ttl_seconds=600))
    op.close()
    pinned = one_on_each(group, token=minted.token)
    try:
        for index in ("0", "1"):
            assert pinned[index].echo("before") == "before"  # known good (cached) in both processes
        revoke_on, other = ("0", "1") if time.monotonic_ns() % 2 else ("1", "0")
        pinned[revoke_on].call("RevokeToken", pb.RevokeTokenRequest(revocation_id=minted.revocation_id),
                               metadata=(("authorization", f"Bearer {group['token']}"),))
        started = time.monotonic()

        def refused():
            try:
                pinned[other].echo("after")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
                return True
            return False
        wait_for(refused, timeout=3.0, every=0.01)
        print(f"revoked through process {revoke_on}, refused by {other} after {time.monotonic() - started:.3f} s")
        with pytest.raises(grpc.RpcError) as caught:
            pinned[revoke_on].echo()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        for p in pinned.values():
            p.close()


def test_a_deploy_through_one_process_is_callable_through_the_other_at_once(group):
    pinned = one_on_each(group)
    try:
        for i, (via, then) in enumerate((("0", "1"), ("1", "0"), ("0", "1"), ("1", "0"))):
            name = f"twin-{i}-{os.getpid()}"
            pinned[via].deploy(name)
            assert pinned[then].echo("first", service=name) == "first"  # no retry: the reply means callable
    finally:
        for p in pinned.values():
            p.close()


def test_a_killed_gateway_process_is_restarted_and_the_port_keeps_serving(group):
    child = group["gateway_pids"][1]
    slots = GroupFile(group["data_dir"] / GROUP_FILE)
    assert slots.slot(1).pid == child
    os.kill(child, signal.SIGKILL)
    killed = time.monotonic()
    served = reset = 0
    while time.monotonic() < killed + 60:  # new connections meanwhile
        pinned = Pinned(group["address"], group["token"])
        try:
            assert pinned.echo("still") == "still"
            served += 1
        except grpc.RpcError as exc:
            # a connection the kernel queued on the dying listener is reset (unless net.ipv4.tcp_migrate_req is
            # on); once the process is gone the kernel hands every new connection to the live one
            assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() - killed < 2.0, exc
            reset += 1
        finally:
            pinned.close()
        slot = slots.slot(1)
        if slot.pid not in (0, child) and slot.ready:
            break
    else:
        raise AssertionError("gateway process 1 was not restarted within 60 s")
    assert served >= 1
    print(f"while process 1 was down: {served} new connections served, {reset} reset at the moment of the kill")
    group["gateway_pids"][1] = slots.slot(1).pid
    pinned = one_on_each(group)  # and connections reach the new process 1 again
    for p in pinned.values():
        p.close()
    log = (group["data_dir"].parent / "two-gateways.log").read_text()
    assert f"gateway process 1 (pid {child}) exited" in log


def test_another_solo_cannot_share_the_port(group, tmp_path):
    port = int(group["address"].rsplit(":", 1)[1])
    other = subprocess.run([sys.executable, "-m", "solo.cli", "up", "--foreground", "--data-dir",
                            str(tmp_path / "other"), "--port", str(port), "--gateway-processes", "2", "--no-example"],
                           capture_output=True, text=True, timeout=120)
    assert other.returncode != 0
    assert f"the gateway port {port} is taken by another Solo" in other.stderr + other.stdout
    assert str(group["data_dir"]) in other.stderr + other.stdout


def test_a_port_another_program_listens_on_is_refused_even_with_reuseport(tmp_path):
    """A server that set SO_REUSEPORT itself (grpc does by default) would otherwise be joined silently."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(FailedPrecondition, match="another process listens there"):
            claim_port("127.0.0.1", port, tmp_path)


def test_a_key_rotation_reaches_both_processes(group):
    """Runs late: after it the operator token of the fixture is past its key's cut-off."""
    from solo.security.keys import KeyRing
    op = Pinned(group["address"], group["token"])
    old = op.call("MintToken", pb.MintTokenRequest(tenant="default", ttl_seconds=600)).token
    op.close()
    pinned = one_on_each(group, token=old)
    try:
        for p in pinned.values():
            assert p.echo("old key") == "old key"
        KeyRing(group["data_dir"] / "keys").rotate(cutoff_seconds=2.0)  # what `solo keys rotate --cutoff` does
        new = pinned["0"].call("MintToken", pb.MintTokenRequest(tenant="default", ttl_seconds=600),
                               metadata=(("authorization", f"Bearer {group['token']}"),)).token
        for index, p in pinned.items():  # minted (new key) through one process, accepted by both
            p.metadata = (("authorization", f"Bearer {new}"),)
            assert p.echo(f"new key {index}") == f"new key {index}"
            p.metadata = (("authorization", f"Bearer {old}"),)

        def old_refused_by_both():  # past the cut-off; a cached answer lasts at most its 10 s window
            for p in pinned.values():
                try:
                    p.echo()
                    return False
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
            return True
        wait_for(old_refused_by_both, timeout=20.0, every=0.2)
    finally:
        for p in pinned.values():
            p.close()


def test_down_stops_every_gateway_process(group):
    pids = list(group["gateway_pids"])
    group["proc"].send_signal(signal.SIGTERM)  # what `solo down` sends
    group["proc"].wait(120)

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    wait_for(lambda: all(gone(p) for p in pids), timeout=15)
    assert not (group["data_dir"] / GROUP_FILE).exists()
