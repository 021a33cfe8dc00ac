"""gateway/group.py without Ray or gRPC: the per-process share of limits, the shared slots, merged metrics."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from solo import metrics
from solo.config import load_config
from solo.errors import FailedPrecondition
from solo.gateway import group as group_module
from solo.gateway import port_lock
from solo.gateway.group import GroupFile, Member, alive, calls_share, per_process, start_time
from solo.gateway.metrics_http import MetricsServer


def test_rates_and_call_quotas_are_split_by_the_number_of_processes(tmp_path):
    config = load_config(None, data_dir=str(tmp_path), gateway__processes=4,
                         limits__token_rate_per_second=100, limits__tenant_rate_per_second=0,
                         limits__tenant_rates={"acme": {"rate_per_second": 8, "burst": 20}},
                         quotas__max_concurrent_calls=10,
                         quotas__tenants={"small": {"max_concurrent_calls": 1}, "big": {"max_services": 3}})
    mine = per_process(config)
    assert mine.limits.token_rate_per_second == 25
    assert mine.limits.tenant_rate_per_second == 0  # 0 = unlimited stays unlimited
    assert (mine.limits.tenant_rates["acme"].rate_per_second, mine.limits.tenant_rates["acme"].burst) == (2, 5)
    assert mine.limits.auth_failures_per_second == config.limits.auth_failures_per_second / 4
    shares = [per_process(config, i).quotas.max_concurrent_calls for i in range(4)]
    assert shares == [3, 3, 2, 2] and sum(shares) == 10  # the total is what was configured, not 4 x 3
    assert [per_process(config, i).quotas.tenants["small"].max_concurrent_calls for i in range(4)] == [1] * 4
    assert calls_share(0, 4, 2) == 0 and calls_share(3, 4, 3) == 1 and calls_share(8, 4, 0) == 2
    assert mine.quotas.tenants["big"].max_concurrent_calls is None
    assert mine.limits.max_in_flight == config.limits.max_in_flight  # per-process protections are not split
    assert per_process(load_config(None, data_dir=str(tmp_path))).limits == load_config(None, data_dir=str(tmp_path)).limits


def test_a_burst_below_the_number_of_processes_still_admits_a_call_in_each(tmp_path):
    # a bucket that can never hold a whole call refuses every call: burst 1 over 2 processes must not be 0.5 each
    config = load_config(None, data_dir=str(tmp_path), gateway__processes=2, limits__token_burst=1,
                         limits__tenant_rates={"acme": {"rate_per_second": 0.5, "burst": 1}})
    mine = per_process(config)
    assert mine.limits.token_burst == 1 and mine.limits.tenant_rates["acme"].burst == 1
    assert mine.limits.tenant_burst == 0  # 0 (two seconds of the rate) stays 0
    assert mine.limits.tenant_rates["acme"].rate_per_second == 0.25


def test_slots_are_shared_through_the_file(tmp_path):
    one = GroupFile.create(tmp_path)
    other = GroupFile(tmp_path / "gateway-group")
    one.write(1, pid=os.getpid(), route_version=1_700_000_000_000_000, metrics_port=9999, ready=True)
    slot = other.slot(1)
    assert (slot.pid, slot.route_version, slot.metrics_port, slot.ready) == (os.getpid(), 1_700_000_000_000_000,
                                                                              9999, True)
    other.write(1, route_version=1_700_000_000_000_001)
    assert one.slot(1).route_version == 1_700_000_000_000_001 and one.slot(1).metrics_port == 9999


def test_merged_metrics_label_every_series_with_its_process(tmp_path):
    member = Member(GroupFile.create(tmp_path), 0, 2, "t")  # no live peer: only this process's series
    metrics.ROUTE_VERSION.set(7)
    text = member.merged_metrics().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sample = families["solo_gateway_route_version"].samples[0]
    assert sample.labels == {"gateway_process": "0"} and sample.value == 7
    assert not any(name.endswith("_created") for name in families)


def test_a_slot_records_its_process_start_time_and_a_reused_pid_is_not_alive(tmp_path):
    group = GroupFile.create(tmp_path)
    group.write(1, pid=os.getpid(), ready=True)
    slot = group.slot(1)
    assert slot.started == start_time(os.getpid()) > 0
    assert alive(slot.pid, slot.started)
    assert not alive(slot.pid, slot.started + 1)  # same pid, another process: not the one that took the slot
    group.write(1, pid=0)
    assert group.slot(1).started == 0


def _series(tenants=("acme", "other"), services=4):
    cache = metrics.CallSeries()
    for tenant in tenants:
        for i in range(services):
            s = cache.get(tenant, f"{tenant}-svc{i}")
            s.in_flight.inc()
            s.done("OK", 0.25)
            s.in_flight.inc()
            s.done("UNAVAILABLE", 0.5)
            s.in_flight.inc()
    return cache


def test_reading_a_tenants_series_directly_equals_collecting_them():
    _series(("sum-a", "sum-b"))
    for tenant in ("sum-a", "sum-b", "nobody"):
        assert metrics.tenant_summary(tenant) == metrics.tenant_summary(tenant, list(metrics.REGISTRY.collect()))


def test_peers_answer_one_tenants_summary_without_the_whole_exposition(tmp_path):
    """GetMetrics must not make a process fetch and parse its peers' whole /metrics (every tenant's series)."""
    _series(("peer-a", "peer-b"))
    scraped = []

    def body():
        scraped.append(1)
        return b""
    group = GroupFile.create(tmp_path)
    peers = [MetricsServer("127.0.0.1", 0, "tok", body, summary=metrics.tenant_summary) for _ in range(2)]
    try:
        for index, peer in enumerate(peers, start=1):
            group.write(index, pid=os.getpid(), metrics_port=peer.address[1], ready=True)
        summary = Member(group, 0, 3, "tok").tenant_summary("peer-a")
        assert scraped == []
        mine = metrics.tenant_summary("peer-a")
        assert set(summary) == set(mine) and summary
        for service, figures in summary.items():  # this process's figures + two peers' (the same registry here)
            assert figures == {k: 3 * v for k, v in mine[service].items()}
    finally:
        for peer in peers:
            peer.close()


def test_the_summary_endpoint_needs_the_group_token(tmp_path):
    server = MetricsServer("127.0.0.1", 0, "tok", summary=metrics.tenant_summary)
    plain = MetricsServer("127.0.0.1", 0, "tok")
    try:
        def get(srv, path, token=None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            request = urllib.request.Request(f"http://127.0.0.1:{srv.address[1]}{path}", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as exc:
                return exc.code, b""
        assert get(server, "/summary?tenant=x")[0] == 401
        assert get(server, "/summary?tenant=x", "nope")[0] == 403
        assert get(server, "/summary", "tok")[0] == 400
        status, text = get(server, "/summary?tenant=nobody", "tok")
        assert status == 200 and json.loads(text) == {}
        assert get(plain, "/summary?tenant=x", "tok")[0] == 404  # only the group's internal endpoint serves it
    finally:
        server.close()
        plain.close()
    with pytest.raises(ValueError):
        MetricsServer("127.0.0.1", 0, "", summary=metrics.tenant_summary)


def test_concurrent_get_metrics_share_one_computation_reused_for_a_second(tmp_path, monkeypatch):
    member = Member(GroupFile.create(tmp_path), 0, 2, "t")
    computed = []

    def slow(tenant):
        computed.append(tenant)
        time.sleep(0.05)
        return {"svc": {"calls": len(computed)}}
    monkeypatch.setattr(member, "tenant_summary", slow)

    async def run():
        answers = await asyncio.gather(*(member.summary("acme") for _ in range(50)))
        assert computed == ["acme"] and all(a == {"svc": {"calls": 1}} for a in answers)
        assert await member.summary("acme") == {"svc": {"calls": 1}}  # within the second: reused
        assert len(computed) == 1
        monkeypatch.setattr(group_module, "SUMMARY_TTL", 0.0)
        await member.summary("acme")
        assert len(computed) == 2
    asyncio.run(run())


def test_at_most_two_summaries_are_computed_at_once(tmp_path, monkeypatch):
    member = Member(GroupFile.create(tmp_path), 0, 2, "t")
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(tenant):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return {}
    monkeypatch.setattr(member, "tenant_summary", slow)

    async def run():
        await asyncio.gather(*(member.summary(f"tenant{i}") for i in range(8)))
    asyncio.run(run())
    assert most[0] == group_module.SUMMARY_CONCURRENCY == 2


def test_a_stuck_process_delays_one_deploy_not_every_one(tmp_path, caplog):
    group = GroupFile.create(tmp_path)
    member = Member(group, 0, 2, "t")
    group.write(1, pid=os.getpid(), route_version=5)  # alive (this test's own pid) and behind

    async def timed(version):
        start = time.monotonic()
        await member.wait_version(version, 0.3)
        return time.monotonic() - start
    with caplog.at_level(logging.WARNING, logger="solo.gateway"):
        assert asyncio.run(timed(6)) >= 0.3
        assert "did not reach route version 6 within 0.3s" in caplog.text
        assert asyncio.run(timed(7)) < 0.1  # known to be behind: not waited for again
        assert "not waiting for gateway process(es) [1]" in caplog.text
    group.write(1, route_version=6)  # it caught up with what it missed: waited for again
    assert asyncio.run(timed(6)) < 0.1
    assert asyncio.run(timed(7)) >= 0.3


def test_the_port_lock_lives_in_the_users_home_not_in_a_shared_tmp(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(port_lock.pwd, "getpwuid", lambda uid: SimpleNamespace(pw_dir=str(home)))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert port_lock._lock_dirs()[:2] == [home / ".cache" / "solo" / "ports", tmp_path / "run" / "solo-ports"]
    fd = port_lock.lock_port(65001, tmp_path)
    try:
        assert (home / ".cache" / "solo" / "ports" / "port-65001.lock").exists()
    finally:
        os.close(fd)
    (home / ".cache" / "solo" / "ports").chmod(0o777)  # writable by others: refused, not used
    with pytest.raises(FailedPrecondition, match="not a folder of this user only"):
        port_lock._lock_dir()
    monkeypatch.setattr(port_lock.pwd, "getpwuid", lambda uid: SimpleNamespace(pw_dir="/proc/nonexistent"))
    (tmp_path / "run").mkdir(mode=0o700)
    assert port_lock._lock_dir() == tmp_path / "run" / "solo-ports"  # no usable home: the runtime folder
