"""The event log while Solo runs: the registry's events go through the sequencer; fail closed."""
from __future__ import annotations

import pytest
import ray

from solo import NotFound, PermissionDenied, Unavailable
from solo.events import read_events
from solo.registry.rebuild import CHECKPOINT_FILE, load_checkpoint
from solo.runtime.event_log_actor import find_event_log, get_or_create_event_log
from tests.conftest import EXAMPLES


def test_operations_are_durable_events_before_the_reply(solo, alice, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    alice.stop(name)
    # no flush to wait for: an operation's reply comes after its events were fsynced
    rows = read_events(solo.supervisor.config.data_dir, subject=name).to_pylist()
    assert [r["type"] for r in rows] == ["service.deploying", "service.started", "service.stopped"]
    ids = read_events(solo.supervisor.config.data_dir).column("id").to_pylist()
    assert ids == list(range(1, len(ids) + 1))  # gap-free across the whole history


def _gauge(solo, name, until, timeout=15.0):
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    deadline = time.monotonic() + timeout
    while True:
        url = f"http://127.0.0.1:{solo.supervisor.gateway.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        value = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}.get(name)
        if value == until or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_deploy_fails_closed_when_the_log_cannot_be_written(solo, alice, name):
    config = solo.supervisor.config
    ray.kill(find_event_log(config.namespace), no_restart=True)
    try:
        with pytest.raises(Unavailable, match="event log"):
            alice.deploy(EXAMPLES / "echo.py", name)
        with pytest.raises(NotFound):
            alice.get(name)  # nothing half-done: no record, no running host
        assert name not in [s["name"] for s in alice.list()]
        assert _gauge(solo, "solo_event_log_writable", until=0) == 0  # the alert says why
    finally:
        get_or_create_event_log(config.data_dir / "events", config.namespace, config.events,
                                checkpoint_file=config.data_dir / CHECKPOINT_FILE,
                                control_secret=solo.supervisor.control_secret)
    alice.deploy(EXAMPLES / "echo.py", name)  # the log is back: operations work again
    assert alice.call(name, "echo", "back") == "back"
    alice.stop(name, remove=True)
    ids = read_events(config.data_dir).column("id").to_pylist()
    assert ids == list(range(1, len(ids) + 1))


def test_query_events_pages_and_tenants_see_only_their_own(solo, alice, bob, operator, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    bob.deploy(EXAMPLES / "echo.py", name)
    mine = alice.events(subject=name)
    assert [e["type"] for e in mine] == ["service.deploying", "service.started"]
    assert {e["tenant"] for e in alice.events(limit=100_000)} == {"alice"}
    assert {e["tenant"] for e in bob.events(subject=name)} == {"bob"}
    with pytest.raises(PermissionDenied, match="can only read its own events"):
        alice.events(tenant="bob")
    everyone = operator.events(subject=name)
    assert {e["tenant"] for e in everyone} == {"alice", "bob"}
    assert [e["id"] for e in operator.events(tenant="bob", subject=name)] == \
        [e["id"] for e in everyone if e["tenant"] == "bob"]
    # paging by after_id gives the same history, in order, without duplicates
    pages = [e["id"] for e in operator.events(limit=100_000)]
    assert pages == sorted(set(pages))
    small = []
    after = 0
    while True:
        page = operator.events(limit=7, after_id=after)
        if not page:
            break
        small.extend(e["id"] for e in page)
        after = page[-1]["id"]
    assert small == pages
    assert alice.events(types=["service.started"], subject=name)[0]["payload"]["version"] == "1"
    alice.stop(name, remove=True)
    bob.stop(name, remove=True)


def test_watch_catches_up_then_follows_without_gap_or_duplicate(solo, alice, bob, name):
    import threading
    start = alice.events(limit=100_000)
    after = start[-2]["id"] if len(start) >= 2 else 0
    seen: list[dict] = []
    done = threading.Event()

    def watch():
        for event in alice.watch(after_id=after):
            seen.append(event)
            if event["type"] == "service.removed" and event["subject"] == name:
                done.set()
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    bob.deploy(EXAMPLES / "echo.py", name)  # another tenant's events never reach alice's watch
    alice.deploy(EXAMPLES / "echo.py", name)
    alice.stop(name, remove=True)
    assert done.wait(30), f"watch saw {[e['type'] for e in seen]}"
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids)) and ids[0] > after
    assert {e["tenant"] for e in seen} == {"alice"}
    expected = [e["id"] for e in alice.events(after_id=after, limit=100_000)]
    assert ids == expected[:len(ids)]  # exactly the history, catch-up and live joined seamlessly
    bob.stop(name, remove=True)


def test_kill_9_of_the_event_log_process_loses_no_acknowledged_event(solo):
    """A steady stream of appends through the actor; SIGKILL its process; Ray restarts it from the files."""
    import asyncio
    import os
    import signal

    from solo.events.reader import read_events as read

    config = solo.supervisor.config
    actor = find_event_log(config.namespace)
    secret = solo.supervisor.control_secret
    pid = ray.get(actor.status.remote(secret))["pid"]
    acked: set[int] = set()

    async def produce(worker: int, stop: asyncio.Event):
        while not stop.is_set():
            rows = [{"tenant": "load", "type": "load.tick", "subject": f"w{worker}", "payload": {"i": i}}
                    for i in range(20)]
            try:
                first, last = await actor.append.remote(secret, rows)
            except Exception:  # noqa: BLE001 - the process is gone: not acknowledged
                await asyncio.sleep(0.05)
                continue
            acked.update(range(first, last + 1))

    async def run():
        stop = asyncio.Event()
        producers = [asyncio.ensure_future(produce(w, stop)) for w in range(4)]
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(2.0)  # Ray restarts the actor; producers go on against the new process
        stop.set()
        await asyncio.gather(*producers)

    asyncio.run(run())
    assert ray.get(actor.status.remote(secret))["pid"] != pid  # it really was a new process
    ids = read(config.data_dir).column("id").to_pylist()
    assert ids == list(range(1, len(ids) + 1))  # gap-free, no duplicates
    assert acked and acked <= set(ids)


def test_a_watcher_that_stops_reading_is_ended_with_where_to_resume(solo, operator):
    import time

    import grpc

    from solo import Overloaded
    from solo._proto import solo_pb2 as pb
    from solo._proto import solo_pb2_grpc

    config = solo.supervisor.config
    actor = find_event_log(config.namespace)
    secret = solo.supervisor.control_secret
    start = ray.get(actor.status.remote(secret))["last_id"]
    channel = grpc.insecure_channel(solo.address)
    call = solo_pb2_grpc.GatewayStub(channel).Watch(
        pb.WatchRequest(filter=pb.EventFilter(tenant="slow", after_id=start)), metadata=operator.metadata)
    filler = "x" * 2000
    for _ in range(20):  # ~80 MB of events: far more than the transport buffers
        ray.get(actor.append.remote(secret, [{"tenant": "slow", "type": "load.tick", "subject": "s",
                                      "payload": {"pad": filler}}] * 2000))
    time.sleep(config.events.watch_slow_consumer_seconds + 3)  # the watcher reads nothing meanwhile
    received = []
    try:
        for event in call:
            received.append(event.id)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "resume with after_id set to the last id you received" in err.details()
        at_least = int(err.details().rsplit("at least ", 1)[1].rstrip(")"))
    else:
        raise AssertionError("the slow watcher was never ended")
    channel.close()
    assert received == list(range(start + 1, start + 1 + len(received)))
    assert received and received[-1] >= at_least  # the bound the server names is honest
    resume = received[-1]
    rest = operator.events(tenant="slow", after_id=resume, limit=100_000)
    assert [e["id"] for e in rest][:1] == [resume + 1]  # resuming continues without a gap or duplicate
    assert Overloaded.code == "RESOURCE_EXHAUSTED"


def test_the_registry_checkpoints_while_running_so_a_rebuild_reads_little(solo, alice, name):
    import time

    data_dir = solo.supervisor.config.data_dir
    alice.deploy(EXAMPLES / "echo.py", name)
    started = read_events(data_dir, subject=name, type="service.started").column("id")[-1].as_py()
    deadline = time.monotonic() + 20  # [events] checkpoint_seconds = 1 in this suite
    while load_checkpoint(data_dir)[0] < started and time.monotonic() < deadline:
        time.sleep(0.2)
    last_id, views = load_checkpoint(data_dir)
    assert last_id >= started
    assert views[("alice", name)].state == "RUNNING"
    alice.stop(name, remove=True)


def test_a_bulk_producer_group_crosses_as_columns_and_a_bad_one_is_refused(solo):
    import asyncio

    from solo import InvalidRequest
    from solo.runtime.event_log_actor import COLUMNAR_FROM_ROWS

    handle = solo.supervisor.event_log_handle()
    rows = [{"tenant": "bulk-test", "type": "bulk.event", "subject": f"s{i}", "payload": {"i": i}}
            for i in range(COLUMNAR_FROM_ROWS + 1)]
    first, last = asyncio.run(handle.append(rows))
    assert last - first + 1 == len(rows)
    stored = read_events(solo.supervisor.config.data_dir, tenant="bulk-test").to_pylist()
    assert [r["id"] for r in stored] == list(range(first, last + 1))
    assert [r["payload"] for r in stored[:2]] == ['{"i": 0}', '{"i": 1}']
    with pytest.raises(InvalidRequest, match="tenant and a type"):
        asyncio.run(handle.append(rows[:-1] + [{"type": "no tenant"}]))
