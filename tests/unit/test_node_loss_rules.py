"""Node loss and periodic snapshots, the pure parts: RegistryState's rescheduling transitions, the snapshot
bounds, the rebuild's fold of `node.lost` / `service.rescheduled`, and the snapshot files."""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from types import SimpleNamespace

import pytest

from solo.core.spec import ServiceSpec
from solo.registry import snapshots
from solo.registry.events import event_rows
from solo.registry.nodeloss import node_death
from solo.registry.rebuild import fold, load_checkpoint, write_checkpoint
from solo.registry.snapshots import SnapshotStore
from solo.registry.state import Placement, RegistryState, SnapshotInfo

SOURCE = "class Echo:\n    def echo(self, x):\n        return x\n"


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def placement(pid: int, node: str = "node-1", ip: str = "10.0.0.1") -> Placement:
    return Placement(address=f"{ip}:{5000 + pid}", key=f"key-{pid}", pid=pid, node_id=node, node_ip=ip,
                     started_at=1.0, methods=("echo",), class_name="Echo", host=f"solo-host-{pid}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock) -> RegistryState:
    return RegistryState(max_services_per_tenant=10, clock=clock)


def running(state: RegistryState, tenant: str, name: str, pid: int, node: str = "node-1"):
    _, record = state.plan_deploy(tenant, ServiceSpec(name=name, source=SOURCE, filename=f"{name}.py"), False)
    return state.started(record, placement(pid, node))


# -- node.lost -------------------------------------------------------------------------------------

def test_node_lost_makes_its_services_restarting_without_counting_a_restart(state):
    a = running(state, "alice", "a", 1)
    b = running(state, "alice", "b", 2)
    elsewhere = running(state, "alice", "c", 3, node="node-2")
    state.take_events()
    version = state.route_version
    lost = state.node_lost("node-1", "10.0.0.1", "gone")
    assert lost == [a, b]
    assert [(r.state, r.placement, r.restarts) for r in lost] == [("RESTARTING", None, 0)] * 2
    assert "node node-1" in a.message and "10.0.0.1" in a.message
    assert elsewhere.state == "RUNNING"
    assert state.route_version > version  # gateways stop routing to the dead hosts at once
    routes = {r.name: r for r in state.routes()}
    assert routes["a"].state == "RESTARTING" and routes["a"].address == ""


def test_node_lost_is_one_event_per_tenant_naming_only_its_services(state):
    running(state, "alice", "a1", 1)
    running(state, "alice", "a2", 2)
    running(state, "bob", "b1", 3)
    state.take_events()
    state.node_lost("node-1", "10.0.0.1", "gone")
    events = state.take_events()
    assert [(e.type, e.tenant, e.subject) for e in events] == [("node.lost", "alice", "node-1"),
                                                              ("node.lost", "bob", "node-1")]
    assert events[0].payload == {"node_id": "node-1", "node_ip": "10.0.0.1", "services": ["a1", "a2"],
                                 "reason": "gone"}
    assert events[1].payload["services"] == ["b1"]
    rows, _ = event_rows(events, {}, {})
    assert [r["principal"] for r in rows] == ["solo", "solo"]  # Solo acts on its own


def test_the_second_report_of_the_same_node_writes_nothing(state):
    running(state, "alice", "a", 1)
    running(state, "alice", "b", 2)
    state.take_events()
    assert len(state.node_lost("node-1", "10.0.0.1", "gone")) == 2
    state.take_events()
    assert state.node_lost("node-1", "10.0.0.1", "gone") == []
    assert state.take_events() == []


def test_services_that_are_not_running_or_are_skipped_are_left_alone(state):
    starting = state.plan_deploy("alice", ServiceSpec(name="s", source=SOURCE, filename="s.py"), False)[1]
    windowed = running(state, "alice", "w", 2)
    state.take_events()
    assert state.node_lost("node-1", "10.0.0.1", "gone", skip=lambda r: r is windowed) == []
    assert (starting.state, windowed.state) == ("STARTING", "RUNNING")
    assert state.take_events() == []


def test_rescheduled_runs_again_on_the_new_node(state):
    record = running(state, "alice", "a", 1)
    state.node_lost("node-1", "10.0.0.1", "gone")
    state.take_events()
    back = state.rescheduled(record, placement(9, node="node-2"), "node-1", "restored from the last snapshot", 4.25)
    assert back is record and record.state == "RUNNING" and record.restarts == 0 and record.message == ""
    [event] = state.take_events()
    assert event.type == "service.rescheduled"
    assert event.payload == {"version": "1", "node_id": "node-2", "pid": 9, "host": "solo-host-9",
                             "from_node": "node-1", "restarts": 0, "state": "restored from the last snapshot",
                             "snapshot_age_seconds": 4.25}
    assert state.routes()[0].address == "10.0.0.1:5009"


def test_a_reschedule_that_finishes_after_a_stop_or_replace_is_dropped(state):
    record = running(state, "alice", "a", 1)
    state.node_lost("node-1", "10.0.0.1", "gone")
    state.stopping("alice", "a")
    assert state.rescheduled(record, placement(9, node="node-2"), "node-1", "fresh") is None
    state.stopped("alice", "a", remove=False)
    assert state.rescheduled(record, placement(9, node="node-2"), "node-1", "fresh") is None
    assert record.state == "STOPPED"


def test_a_reschedule_that_cannot_be_placed_fails_with_the_reason(state):
    record = running(state, "alice", "a", 1)
    state.node_lost("node-1", "10.0.0.1", "gone")
    state.take_events()
    state.reschedule_failed(record, "Ray could not place the service within 30s")
    assert record.state == "FAILED"
    assert record.message.startswith("could not be rescheduled after its node was lost: Ray could not place")
    [event] = state.take_events()
    assert (event.type, event.payload["reason"]) == ("service.failed", record.message)


def test_a_crash_after_a_reschedule_counts_from_where_it_was(state):
    record = running(state, "alice", "a", 1)
    state.node_lost("node-1", "10.0.0.1", "gone")
    state.rescheduled(record, placement(9, node="node-2"), "node-1", "fresh")
    assert state.crashed("alice", "a", record.generation, 1, "late report from the old host", 3) is None
    assert state.crashed("alice", "a", record.generation, 9, "boom", 3) is record
    assert record.restarts == 1


def test_node_text_is_capped(state):
    running(state, "alice", "a", 1, node="n" * 500)
    state.take_events()
    state.node_lost("n" * 500, "i" * 500, "r" * 5000)
    [event] = state.take_events()
    assert len(event.payload["node_id"]) == 200 and len(event.payload["node_ip"]) == 200
    assert len(event.payload["reason"]) == 2000


@pytest.mark.parametrize("text, preempted, words", [
    ("The actor died because its node has died. Node Id: abc\n\tthe actor's node was terminated: node "
     "ray-worker-pod-7f9c.internal.corp (10.1.2.3) was drained by the autoscaler", False, "the node was removed"),
    ("The actor died because its node has died. Node Id: abc\n\tThe node (ip: 10.1.2.3, name: gke-secret-pool-1) "
     "missed too many health checks", False, "the node stopped answering"),
    ("The actor died because its node has died. Node Id: abc spot-host-42", True, "the node was preempted"),
    ("The actor died unexpectedly before finishing this task. /home/ray/secret/path", False,
     "the node stopped answering"),
])
def test_node_death_is_solos_fixed_wording_never_rays_text(text, preempted, words):
    exc = RuntimeError(text)
    exc.preempted = preempted
    assert node_death(exc) == words


# -- snapshot bounds -------------------------------------------------------------------------------

def test_one_snapshot_per_service_the_latest_wins(state, clock):
    record = running(state, "alice", "a", 1)
    assert state.snapshot_taken(record, 10, "d1", max_bytes=100) is not None
    clock.t += 5
    state.snapshot_taken(record, 20, "d2", max_bytes=100)
    assert len(state.snapshots) == 1
    info = state.snapshot_for(record)
    assert (info.size, info.digest, info.taken_at, info.version) == (20, "d2", 1005.0, "1")


def test_a_snapshot_over_the_cap_or_empty_is_not_kept(state):
    record = running(state, "alice", "a", 1)
    assert state.snapshot_taken(record, 101, "d", max_bytes=100) is None
    assert state.snapshot_taken(record, 0, "d", max_bytes=100) is None
    assert state.snapshots == {}


def test_a_snapshot_of_a_run_that_is_over_is_not_kept(state):
    record = running(state, "alice", "a", 1)
    state.crashed("alice", "a", record.generation, 1, "boom", 3)
    assert state.snapshot_taken(record, 10, "d", max_bytes=100) is None  # RESTARTING
    stale = running(state, "alice", "b", 2)
    state.stopping("alice", "b")
    assert state.snapshot_taken(stale, 10, "d", max_bytes=100) is None


def test_a_crash_restart_or_a_new_version_does_not_get_the_old_snapshot(state):
    record = running(state, "alice", "a", 1)
    state.snapshot_taken(record, 10, "d", max_bytes=100)
    state.crashed("alice", "a", record.generation, 1, "boom", 3)
    state.started(record, placement(2), restarted=True)
    assert state.snapshot_for(record) is None  # came back fresh: an older state is not its own
    _, new = state.plan_deploy("alice", ServiceSpec(name="a", source=SOURCE + "\n", filename="a.py"), True)
    state.started(new, placement(3))
    state.snapshot_taken(new, 10, "d", max_bytes=100)
    assert state.snapshot_for(new) is not None and state.snapshot_for(record) is None


def test_a_reschedule_keeps_the_snapshot_for_the_next_node_loss(state):
    record = running(state, "alice", "a", 1)
    state.snapshot_taken(record, 10, "d", max_bytes=100)
    state.node_lost("node-1", "10.0.0.1", "gone")
    state.rescheduled(record, placement(9, node="node-2"), "node-1", "restored from the last snapshot")
    assert state.snapshot_for(record) is not None


def test_stop_and_remove_drop_the_snapshot(state):
    a = running(state, "alice", "a", 1)
    b = running(state, "alice", "b", 2)
    state.snapshot_taken(a, 10, "d", max_bytes=100)
    state.snapshot_taken(b, 10, "d", max_bytes=100)
    state.stopping("alice", "a")
    state.stopped("alice", "a", remove=False)
    state.stopping("alice", "b")
    state.stopped("alice", "b", remove=True)
    assert state.snapshots == {}


def test_snapshots_never_become_events(state):
    record = running(state, "alice", "a", 1)
    state.take_events()
    state.snapshot_taken(record, 10, "d", max_bytes=100)
    assert state.take_events() == []


# -- the rebuild folds node loss -------------------------------------------------------------------

def rows(*events):
    return [{"id": i + 1, "time": 1000.0 + i, "tenant": t, "type": kind, "subject": subject,
             "payload": json.dumps(payload)} for i, (t, kind, subject, payload) in enumerate(events)]


DEPLOY = {"spec": "f" * 64, "version": "1", "generation": 1}


def test_fold_node_lost_then_rescheduled():
    history = rows(("alice", "service.deploying", "a", DEPLOY),
                   ("alice", "service.started", "a", {"host": "solo-host-1", "pid": 1, "restarts": 0}),
                   ("alice", "service.deploying", "b", DEPLOY),
                   ("alice", "service.started", "b", {"host": "solo-host-2", "pid": 2, "restarts": 0}),
                   ("alice", "node.lost", "node-1", {"node_id": "node-1", "services": ["a", "b"]}))
    views = fold(history)
    assert [(v.state, v.host, v.pid, v.wanted, v.restarts, v.moving) for v in views.values()] == \
        [("RESTARTING", "", 0, True, 0, "node-1")] * 2  # a rebuild now moves them on (with their snapshots)
    views = fold(rows(("alice", "service.rescheduled", "a", {"host": "solo-host-9", "pid": 9, "restarts": 0})),
                 views)
    a = views[("alice", "a")]
    assert (a.state, a.host, a.pid, a.restarts, a.moving) == ("RUNNING", "solo-host-9", 9, 0, "")
    assert views[("alice", "b")].moving == "node-1"


def test_a_move_in_progress_survives_the_checkpoint(tmp_path):
    history = rows(("alice", "service.deploying", "a", DEPLOY),
                   ("alice", "service.started", "a", {"host": "h1", "pid": 1}),
                   ("alice", "node.lost", "node-1", {"node_id": "node-1", "services": ["a"]}))
    write_checkpoint(tmp_path, 3, fold(history))
    _, views = load_checkpoint(tmp_path)
    assert views[("alice", "a")].moving == "node-1"


def test_anything_after_node_lost_ends_the_move():
    history = rows(("alice", "service.deploying", "a", DEPLOY),
                   ("alice", "service.started", "a", {"host": "h1", "pid": 1}),
                   ("alice", "node.lost", "node-1", {"node_id": "node-1", "services": ["a"]}),
                   ("alice", "service.failed", "a", {"reason": "could not be rescheduled"}))
    a = fold(history)[("alice", "a")]
    assert (a.state, a.wanted, a.moving) == ("FAILED", False, "")


def test_fold_node_lost_touches_only_its_own_tenants_services():
    history = rows(("alice", "service.deploying", "a", DEPLOY),
                   ("alice", "service.started", "a", {"host": "h1", "pid": 1}),
                   ("bob", "service.deploying", "a", DEPLOY),
                   ("bob", "service.started", "a", {"host": "h2", "pid": 2}),
                   ("alice", "node.lost", "node-1", {"services": ["a"]}))
    views = fold(history)
    assert views[("alice", "a")].state == "RESTARTING" and views[("bob", "a")].state == "RUNNING"


def test_fold_skips_a_malformed_node_lost():
    history = rows(("alice", "service.deploying", "a", DEPLOY),
                   ("alice", "service.started", "a", {"host": "h1", "pid": 1}),
                   ("alice", "node.lost", "node-1", {"services": "a"}),
                   ("alice", "node.lost", "node-1", {"services": ["../a"]}))
    assert fold(history)[("alice", "a")].state == "RUNNING"


# -- the snapshot files ----------------------------------------------------------------------------

def info_for(data: bytes, **kw) -> SnapshotInfo:
    fields = {"generation": 1, "restarts": 0, "version": "1", "taken_at": 5.0, "size": len(data),
              "digest": hashlib.sha256(data).hexdigest()} | kw
    return SnapshotInfo(**fields)


def test_snapshot_files_round_trip_private(tmp_path):
    store = SnapshotStore(tmp_path / "snapshots")
    data = b'{"value": 5}'
    info = info_for(data)
    store.put("alice", "a", info, data)
    path = tmp_path / "snapshots" / "alice" / "a.json"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert store.info("alice", "a") == info
    assert store.read("alice", "a", info) == '{"value": 5}'
    # an unchanged state is not written again: the file's older time still matches
    assert store.read("alice", "a", info_for(data, taken_at=99.0)) == '{"value": 5}'


def test_a_snapshot_file_of_another_run_or_damaged_is_not_read(tmp_path):
    store = SnapshotStore(tmp_path)
    data = b'{"value": 5}'
    store.put("alice", "a", info_for(data), data)
    assert store.read("alice", "a", info_for(data, restarts=1)) is None
    assert store.read("alice", "a", info_for(data, generation=2)) is None
    path = tmp_path / "alice" / "a.json"
    path.write_bytes(path.read_bytes().replace(b"5}", b"6}"))
    assert store.read("alice", "a", info_for(data)) is None
    path.write_bytes(b"not a header\n{}")
    assert store.info("alice", "a") is None
    assert store.read("bob", "missing", info_for(data)) is None


def test_snapshot_files_refuse_names_that_are_not_names(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(ValueError):
        store.put("..", "a", info_for(b"{}"), b"{}")
    assert store.info("alice", "../x") is None


def test_sweep_keeps_only_the_services_it_is_told(tmp_path):
    store = SnapshotStore(tmp_path)
    for tenant, name in (("alice", "a"), ("alice", "gone"), ("bob", "b")):
        store.put(tenant, name, info_for(b"{}"), b"{}")
    store.sweep({("alice", "a")})
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["alice", "alice/a.json"]
    store.forget("alice", "a")
    assert store.info("alice", "a") is None


# -- hostile tenants: fairness, disk budget, a stop during a write -----------------------------------

class FakeHost:
    def __init__(self, delay: float, taken: list, who: str):
        self.delay, self.taken, self.who = delay, taken, who

    def remote(self, max_bytes):
        async def answer():
            await asyncio.sleep(self.delay)
            self.taken.append((self.who, time.monotonic()))
            return {"has_snapshot": True, "state": json.dumps({"t": time.monotonic()})}  # changes every time
        return answer()


class FakeRegistry(snapshots.SnapshotMixin):
    def __init__(self, state, store, every=0.3, budget=0):
        self.state, self.snapshot_files = state, store
        self.hosts, self.standby, self._no_snapshot, self._snapshot_warned = {}, {}, {}, {}
        self.config = SimpleNamespace(swap=SimpleNamespace(max_state_bytes=1 << 20),
                                      runtime=SimpleNamespace(snapshot_seconds=every, snapshot_tenant_bytes=budget))
        self.locks, self.tasks = {}, set()

    def _lock(self, key):
        return self.locks.setdefault(key, asyncio.Lock())

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@pytest.fixture
def no_ray(monkeypatch):
    async def call_host(ref, timeout, what):
        return await asyncio.wait_for(ref, timeout)
    monkeypatch.setattr(snapshots, "call_host", call_host)
    monkeypatch.setattr(snapshots, "TICK", 0.01)


def test_a_tenants_slow_snapshots_do_not_delay_another_tenants(state, tmp_path, no_ray):
    """mallory's 20 snapshot()s each take a third of the interval; alice's snapshot is still taken about
    every interval (one round at a time, four at once, made it about three intervals)."""
    every, taken = 0.3, []
    state = RegistryState(max_services_per_tenant=100, clock=time.time)
    registry = FakeRegistry(state, SnapshotStore(tmp_path), every)
    for i in range(20):
        record = running(state, "mallory", f"s{i}", 100 + i)
        registry.hosts[record.key] = SimpleNamespace(snapshot=FakeHost(0.099, taken, "mallory"))
    record = running(state, "alice", "kv", 1)
    registry.hosts[record.key] = SimpleNamespace(snapshot=FakeHost(0, taken, "alice"))

    async def run():
        loop = asyncio.ensure_future(registry._snapshot_loop())
        await asyncio.sleep(every * 6.5)
        loop.cancel()
    asyncio.run(run())
    alice = [t for who, t in taken if who == "alice"]
    gaps = [b - a for a, b in zip(alice, alice[1:])]
    assert len(alice) >= 5 and max(gaps) < every * 1.5, gaps
    assert sum(who == "mallory" for who, _ in taken) >= 5  # mallory is served too, one at a time


def test_the_schedule_gives_a_free_slot_to_the_tenant_served_longest_ago():
    schedule = snapshots.SnapshotSchedule(every=10, parallel=2, per_tenant=1)
    keys = [("mallory", f"s{i}") for i in range(5)] + [("alice", "a"), ("bob", "b")]
    assert schedule.pick(keys, 0) == []  # first seen: due one interval later
    first = schedule.pick(keys, 10)
    assert len(first) == 2 and len({k[0] for k in first}) == 2  # one per tenant
    schedule.done(first[0], 11)
    [then] = schedule.pick(keys, 11)
    assert then[0] not in {k[0] for k in first}  # the tenant not served yet goes first
    schedule.done(then, 12)
    assert schedule.due[then] == 21  # due again one interval after it started
    assert first == [("alice", "a"), ("bob", "b")] and then == ("mallory", "s0")
    assert schedule.pick(keys, 12) == [("mallory", "s1")]  # s0 is not due again yet; bob is still in flight
    assert schedule.pick(keys, 13) == []  # mallory has one in flight: its others wait, nobody else's do


def test_a_tenant_over_its_snapshot_budget_keeps_its_older_snapshots(tmp_path):
    store = SnapshotStore(tmp_path)
    data = b"x" * 1000
    store.put("alice", "a", info_for(data), data, tenant_budget=2500)
    store.put("alice", "b", info_for(data), data, tenant_budget=2500)
    with pytest.raises(snapshots.NoRoom) as refused:
        store.put("alice", "c", info_for(data), data, tenant_budget=2500)
    assert refused.value.tenant_wide and not (tmp_path / "alice" / "c.json").exists()
    store.put("alice", "a", info_for(b"y" * 900), b"y" * 900, tenant_budget=2500)  # its own file is replaced
    store.put("bob", "c", info_for(data), data, tenant_budget=2500)  # other tenants have their own budget
    assert store.read("alice", "b", info_for(data)) == data.decode()
    store.forget("alice", "b")
    store.put("alice", "c", info_for(data), data, tenant_budget=2500)
    store.put("alice", "d", info_for(data), data, tenant_budget=0)  # 0: no limit


def test_the_budget_counts_files_found_at_start(tmp_path):
    data = b"x" * 1000
    SnapshotStore(tmp_path).put("alice", "a", info_for(data), data)
    store = SnapshotStore(tmp_path)  # a registry restart
    assert store.info("alice", "a") is not None
    with pytest.raises(snapshots.NoRoom):
        store.put("alice", "b", info_for(data), data, tenant_budget=1500)


def test_nothing_is_written_on_a_nearly_full_disk(tmp_path, monkeypatch):
    store = SnapshotStore(tmp_path)
    monkeypatch.setattr(snapshots.shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=100 << 30, used=0, free=(1 << 30) + 500))
    with pytest.raises(snapshots.NoRoom) as refused:
        store.put("alice", "a", info_for(b"x" * 1000), b"x" * 1000)
    assert not refused.value.tenant_wide and not (tmp_path / "alice" / "a.json").exists()
    store.put("alice", "a", info_for(b"{}"), b"{}")  # what fits above the reserve is written


def test_a_snapshot_over_the_budget_is_skipped_and_counted(state, tmp_path, no_ray):
    registry = FakeRegistry(state, SnapshotStore(tmp_path), budget=100)
    record = running(state, "alice", "a", 1)
    registry.hosts[record.key] = SimpleNamespace(snapshot=FakeHost(0, [], "alice"))
    big = SimpleNamespace(snapshot=SimpleNamespace(
        remote=lambda max_bytes: asyncio.sleep(0, {"has_snapshot": True, "state": json.dumps("x" * 500)})))
    registry.hosts[record.key] = big
    asyncio.run(registry._take_snapshot(record))
    assert state.snapshot_for(record) is None and not (tmp_path / "alice" / "a.json").exists()
    assert registry.snapshots_skipped_for_room["alice"] == 1


class SlowStore(SnapshotStore):
    def put(self, *args, **kwargs):
        time.sleep(0.3)  # a large write and its fsync
        super().put(*args, **kwargs)


def test_a_stop_during_a_snapshot_write_leaves_no_file(state, tmp_path, no_ray):
    registry = FakeRegistry(state, SlowStore(tmp_path))
    record = running(state, "alice", "a", 1)
    registry.hosts[record.key] = SimpleNamespace(snapshot=FakeHost(0, [], "alice"))

    async def stop():  # what RegistryActor.stop does, under the service's lock
        await asyncio.sleep(0.1)
        async with registry._lock(record.key):
            registry.hosts.pop(record.key)
            state.stopped("alice", "a", remove=True)
            await asyncio.to_thread(registry.snapshot_files.forget, "alice", "a")

    async def both():
        await asyncio.gather(registry._take_snapshot(record), stop())
    asyncio.run(both())
    assert not (tmp_path / "alice" / "a.json").exists()


@pytest.mark.parametrize("lost", [True, False])
def test_a_crash_during_a_snapshot_write_drops_the_file_a_lost_node_keeps_it(state, tmp_path, no_ray, lost):
    registry = FakeRegistry(state, SlowStore(tmp_path))
    record = running(state, "alice", "a", 1)
    registry.hosts[record.key] = SimpleNamespace(snapshot=FakeHost(0, [], "alice"))

    async def die():  # neither takes the service's lock
        await asyncio.sleep(0.1)
        registry.hosts.pop(record.key)
        if lost:
            state.node_lost("node-1", "10.0.0.1", "the node stopped answering")
        else:
            state.crashed("alice", "a", record.generation, 1, "boom", 3)

    async def both():
        await asyncio.gather(registry._take_snapshot(record), die())
    asyncio.run(both())
    if lost:  # it moves on with the snapshot just written
        info = state.snapshot_for(record)
        assert info is not None and registry.snapshot_files.read("alice", "a", info) is not None
    else:
        assert not (tmp_path / "alice" / "a.json").exists()
