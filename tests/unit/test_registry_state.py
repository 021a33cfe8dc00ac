"""solo.registry.state: the registry's pure state machine, driven with an injected clock."""
from __future__ import annotations

import pytest

from solo.core.spec import ServiceSpec
from solo.errors import AlreadyExists, FailedPrecondition, NotFound, Overloaded
from solo.registry.events import event_rows
from solo.registry.state import Event, Placement, RegistryState, ServiceRecord, acting_for


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def spec(name: str = "echo", source: str = "class Echo:\n    def echo(self, x):\n        return x\n",
         **kw) -> ServiceSpec:
    return ServiceSpec(name=name, source=source, filename=f"{name}.py", **kw)


def placement(pid: int = 100, address: str = "10.0.0.1:5000") -> Placement:
    return Placement(address=address, key=f"key-{pid}", pid=pid, node_id="node-1", node_ip="10.0.0.1",
                     started_at=1.0, methods=("echo",), class_name="Echo")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock) -> RegistryState:
    return RegistryState(max_services_per_tenant=3, clock=clock)


def running(state: RegistryState, tenant: str = "acme", s: ServiceSpec | None = None, pid: int = 100,
            replace: bool = False) -> ServiceRecord:
    _, record = state.plan_deploy(tenant, s or spec(), replace)
    return state.started(record, placement(pid))


def types(state: RegistryState) -> list[str]:
    return [e.type for e in state.take_events()]


# -- deploy ---------------------------------------------------------------------------------------

def test_first_deploy_creates_a_starting_record(state, clock):
    clock.t = 1234.5
    action, record = state.plan_deploy("acme", spec(), False)
    assert action == "create"
    assert (record.tenant, record.name, record.state, record.version, record.generation, record.created_at) == \
        ("acme", "echo", "STARTING", "1", 1, 1234.5)
    assert state.get("acme", "echo") is record
    assert types(state) == ["service.deploying"]


def test_deploying_event_describes_the_spec_without_secrets(state):
    state.plan_deploy("acme", spec(env={"API_KEY": "s3cret"}, labels={"team": "x"}), False)
    (event,) = state.take_events()
    assert (event.tenant, event.subject) == ("acme", "echo")
    assert event.payload["env_keys"] == ["API_KEY"] and "s3cret" not in repr(event.payload)
    assert event.payload["labels"] == {"team": "x"} and event.payload["filename"] == "echo.py"


def test_same_spec_again_is_a_noop(state):
    first = running(state)
    version = state.route_version
    state.take_events()
    action, record = state.plan_deploy("acme", spec(), False)
    assert (action, record) == ("noop", first)
    assert state.route_version == version and state.take_events() == []


def test_same_spec_while_starting_is_a_noop(state):
    _, record = state.plan_deploy("acme", spec(), False)
    assert state.plan_deploy("acme", spec(), False) == ("noop", record)


def test_different_spec_without_replace_already_exists(state):
    running(state)
    with pytest.raises(AlreadyExists) as err:
        state.plan_deploy("acme", spec(max_concurrency=4), False)
    assert "already runs version 1" in err.value.message and "--replace" in err.value.message


def test_replace_starts_a_new_generation_and_leaves_the_old_one_running(state):
    old = running(state)
    state.take_events()
    action, new = state.plan_deploy("acme", spec(max_concurrency=4), True)
    assert action == "replace" and new is not old
    assert (new.generation, new.version, new.state) == (2, "2", "STARTING")
    assert state.get("acme", "echo") is old and old.state == "RUNNING"
    (event,) = state.take_events()  # the new spec is recorded; the old version keeps serving
    assert (event.type, event.payload["version"], event.payload["replaces"]) == ("service.deploying", "2", "1")
    version = state.route_version
    state.started(new, placement(pid=200))
    assert state.get("acme", "echo") is new and new.state == "RUNNING"
    assert state.route_version > version
    assert types(state) == ["service.replaced", "service.started"]


def test_replaced_event_names_both_versions(state):
    running(state)
    _, new = state.plan_deploy("acme", spec(max_concurrency=4), True)
    state.take_events()
    state.started(new, placement(pid=200))
    replaced = state.take_events()[0]
    assert replaced.payload == {"version": "2", "previous_version": "1"}


def test_versions_count_generations_and_user_versions_are_kept(state):
    assert running(state).version == "1"
    _, second = state.plan_deploy("acme", spec(max_concurrency=2), True)
    assert state.started(second, placement(200)).version == "2"
    _, third = state.plan_deploy("acme", spec(version="v3.0"), True)
    assert state.started(third, placement(300)).version == "v3.0"
    assert third.generation == 3
    _, fourth = state.plan_deploy("acme", spec(max_concurrency=3), True)
    assert fourth.version == "4"


def test_generations_are_per_service(state):
    running(state)
    _, other = state.plan_deploy("acme", spec("kv"), False)
    assert (other.generation, other.version) == (1, "1")


def test_redeploy_after_stop_creates_a_new_generation(state):
    running(state)
    state.stopping("acme", "echo")
    state.stopped("acme", "echo", remove=False)
    action, record = state.plan_deploy("acme", spec(), False)  # same spec, but nothing active: not a noop
    assert (action, record.generation, record.version, record.state) == ("create", 2, "2", "STARTING")


# -- started / routes -----------------------------------------------------------------------------

def test_started_marks_running_and_bumps_the_route_version(state):
    _, record = state.plan_deploy("acme", spec(), False)
    version = state.route_version
    state.take_events()
    result = state.started(record, placement())
    assert result is record and record.state == "RUNNING" and record.placement == placement()
    assert state.route_version == version + 1
    (event,) = state.take_events()
    assert event.type == "service.started" and event.payload["pid"] == 100 and event.payload["node_id"] == "node-1"


def test_routes_carry_the_address_only_when_running(state):
    _, record = state.plan_deploy("acme", spec(), False)
    (route,) = state.routes()
    assert (route.tenant, route.name, route.state, route.address, route.key) == ("acme", "echo", "STARTING", "", "")
    state.started(record, placement())
    (route,) = state.routes()
    assert (route.state, route.address, route.key, route.version) == ("RUNNING", "10.0.0.1:5000", "key-100", "1")
    state.stopping("acme", "echo")
    (route,) = state.routes()
    assert (route.state, route.address) == ("STOPPING", "")


def test_started_for_a_stale_generation_changes_nothing(state):
    _, gen1 = state.plan_deploy("acme", spec(), False)
    _, gen2 = state.plan_deploy("acme", spec(max_concurrency=2), True)
    state.started(gen2, placement(200))
    state.take_events()
    version = state.route_version
    assert state.started(gen1, placement(100)) is None  # the caller drops the stale host
    assert state.get("acme", "echo") is gen2 and gen2.placement.pid == 200
    assert state.route_version == version and state.take_events() == []


@pytest.mark.parametrize("remove", [False, True])
def test_started_after_the_service_was_stopped_changes_nothing(state, remove):
    """A start that lands after a stop or remove (suspend_all takes no per-service lock) must not revive it."""
    _, record = state.plan_deploy("acme", spec(), False)
    state.stopping("acme", "echo")
    state.stopped("acme", "echo", remove=remove)
    state.take_events()
    version = state.route_version
    assert state.started(record, placement()) is None  # the caller drops the host
    assert record.state == "STOPPED" and all(r.state != "RUNNING" and not r.address for r in state.routes())
    assert len(state.routes()) == (0 if remove else 1)
    assert state.route_version == version and state.take_events() == []


def test_start_failure_after_the_service_was_stopped_keeps_it_stopped(state):
    _, record = state.plan_deploy("acme", spec(), False)
    state.stopping("acme", "echo")
    state.stopped("acme", "echo", remove=False)
    state.take_events()
    state.start_failed(record, "boom", replacing=False)
    assert record.state == "STOPPED" and state.take_events() == []


# -- start failures -------------------------------------------------------------------------------

def test_start_failed_marks_a_new_service_failed(state):
    _, record = state.plan_deploy("acme", spec(), False)
    state.take_events()
    version = state.route_version
    state.start_failed(record, "ImportError: no module named numpy", replacing=False)
    assert record.state == "FAILED" and record.message == "ImportError: no module named numpy"
    assert state.route_version == version + 1
    (route,) = state.routes()
    assert (route.state, route.message) == ("FAILED", "ImportError: no module named numpy")
    (event,) = state.take_events()
    assert event.type == "service.failed" and event.payload["reason"] == "ImportError: no module named numpy"


def test_failed_replacement_leaves_the_old_version_running(state):
    old = running(state)
    _, new = state.plan_deploy("acme", spec(max_concurrency=2), True)
    state.take_events()
    version = state.route_version
    state.start_failed(new, "boom", replacing=True)
    assert state.get("acme", "echo") is old and old.state == "RUNNING" and old.placement == placement()
    assert state.route_version == version
    (event,) = state.take_events()
    assert (event.type, event.payload["version"], event.payload["reason"]) == ("service.replace_failed", "2", "boom")


def test_redeploy_after_a_failed_start_creates_again(state):
    _, record = state.plan_deploy("acme", spec(), False)
    state.start_failed(record, "boom", replacing=False)
    action, again = state.plan_deploy("acme", spec(), False)
    assert action == "create" and again.generation == 2 and state.get("acme", "echo") is again


# -- crashes --------------------------------------------------------------------------------------

def test_crash_schedules_restarts_until_the_limit_then_fails(state):
    record = running(state)
    state.take_events()
    for attempt in (1, 2):
        version = state.route_version
        to_restart = state.crashed("acme", "echo", 1, record.placement.pid, "SIGKILL", max_restarts=2)
        assert to_restart is record
        assert (record.state, record.restarts, record.placement) == ("RESTARTING", attempt, None)
        assert record.message == f"restart {attempt} of 2 after: SIGKILL"
        assert state.route_version == version + 1
        assert types(state) == ["service.crashed", "service.restarting"]
        state.started(record, placement(pid=100 + attempt), restarted=True)
        assert record.state == "RUNNING"
        assert types(state) == ["service.restarted"]
    assert state.crashed("acme", "echo", 1, 102, "OOM", max_restarts=2) is None
    assert record.state == "FAILED" and record.restarts == 2
    assert record.message == "crashed 3 time(s), restart limit 2 reached: OOM"
    assert types(state) == ["service.crashed", "service.failed"]
    (route,) = state.routes()
    assert (route.state, route.address) == ("FAILED", "")


def test_zero_max_restarts_fails_on_the_first_crash(state):
    record = running(state)
    assert state.crashed("acme", "echo", 1, 100, "boom", max_restarts=0) is None
    assert record.state == "FAILED"


def test_crash_of_a_stale_generation_is_ignored(state):
    running(state)
    _, new = state.plan_deploy("acme", spec(max_concurrency=2), True)
    state.started(new, placement(200))
    state.take_events()
    version = state.route_version
    assert state.crashed("acme", "echo", 1, 100, "old host killed", max_restarts=3) is None
    assert new.state == "RUNNING" and new.restarts == 0
    assert state.route_version == version and state.take_events() == []


def test_crash_of_a_stale_pid_is_ignored(state):
    record = running(state, pid=100)
    state.crashed("acme", "echo", 1, 100, "boom", max_restarts=3)
    state.started(record, placement(pid=101), restarted=True)
    state.take_events()
    assert state.crashed("acme", "echo", 1, 100, "late notice about the old pid", max_restarts=3) is None
    assert record.state == "RUNNING" and record.restarts == 1 and record.placement.pid == 101
    assert state.take_events() == []


def test_crash_of_a_stopped_or_unknown_service_is_ignored(state):
    running(state)
    state.stopping("acme", "echo")
    assert state.crashed("acme", "echo", 1, 100, "stopped on purpose", max_restarts=3) is None
    assert state.crashed("acme", "nope", 1, 100, "x", max_restarts=3) is None
    assert state.get("acme", "echo").state == "STOPPING"


# -- stop / remove --------------------------------------------------------------------------------

def test_stopping_then_stopped(state):
    record = running(state)
    state.take_events()
    version = state.route_version
    assert state.stopping("acme", "echo") is record and record.state == "STOPPING"
    assert state.route_version == version + 1
    state.stopped("acme", "echo", remove=False, message="stop() took 2s")
    assert (record.state, record.placement, record.message) == ("STOPPED", None, "stop() took 2s")
    assert state.get("acme", "echo") is record
    assert state.route_version == version + 2
    assert types(state) == ["service.stopped"]


def test_stopping_an_already_stopped_service_does_not_bump_routes(state):
    running(state)
    state.stopping("acme", "echo")
    state.stopped("acme", "echo", remove=False)
    version = state.route_version
    assert state.stopping("acme", "echo").state == "STOPPED"
    assert state.route_version == version


def test_remove_forgets_the_service(state):
    running(state)
    state.take_events()
    state.stopping("acme", "echo")
    state.stopped("acme", "echo", remove=True)
    assert state.routes() == [] and state.list("acme") == []
    with pytest.raises(NotFound):
        state.get("acme", "echo")
    assert types(state) == ["service.removed"]


def test_stop_unknown_service_is_not_found(state):
    with pytest.raises(NotFound):
        state.stopping("acme", "nope")
    with pytest.raises(NotFound):
        state.stopped("acme", "nope", remove=True)


def test_suspend_all_stops_every_active_service_but_keeps_it_wanted(state):
    running(state, "acme")
    running(state, "beta")
    _, starting = state.plan_deploy("acme", spec("kv"), False)
    _, failed = state.plan_deploy("acme", spec("bad"), False)
    state.start_failed(failed, "boom", replacing=False)
    state.take_events()
    state.suspend_all("solo down")
    assert {(r.tenant, r.name): r.state for r in state.services.values()} == {
        ("acme", "echo"): "STOPPED", ("beta", "echo"): "STOPPED", ("acme", "kv"): "STOPPED",
        ("acme", "bad"): "FAILED"}
    assert all(r.address == "" for r in state.routes())
    assert types(state) == ["service.suspended"] * 3  # not "stopped": they come back with Solo


# -- tenants --------------------------------------------------------------------------------------

def test_same_name_in_two_tenants_is_independent(state):
    acme = running(state, "acme", pid=1)
    _, beta = state.plan_deploy("beta", spec(max_concurrency=5), False)  # a different spec: no AlreadyExists
    assert beta is not acme and beta.generation == 1
    state.crashed("acme", "echo", 1, 1, "boom", max_restarts=0)
    assert acme.state == "FAILED" and beta.state == "STARTING"
    assert [r.name for r in state.list("beta")] == ["echo"] and state.list("beta")[0] is beta


def test_another_tenants_service_is_not_found_with_the_same_message(state):
    running(state, "acme")
    with pytest.raises(NotFound) as theirs:
        state.get("beta", "echo")
    with pytest.raises(NotFound) as missing:
        RegistryState().get("beta", "echo")  # the same name where nobody deployed it
    assert theirs.value.message == missing.value.message
    assert "acme" not in theirs.value.message


def test_list_is_per_tenant_and_sorted(state):
    for name in ("zeta", "alpha", "mid"):
        state.plan_deploy("acme", spec(name), False)
    state.plan_deploy("beta", spec("other"), False)
    assert [r.name for r in state.list("acme")] == ["alpha", "mid", "zeta"]
    assert [r.name for r in state.list("beta")] == ["other"]
    assert state.list("nobody") == []


def test_per_tenant_service_limit_is_overloaded(state):
    for name in ("a", "b", "c"):
        state.plan_deploy("acme", spec(name), False)
    with pytest.raises(Overloaded) as err:
        state.plan_deploy("acme", spec("d"), False)
    assert "quota max_services" in err.value.message and "may have 3" in err.value.message
    state.plan_deploy("beta", spec("d"), False)  # other tenants are not affected
    assert state.plan_deploy("acme", spec("a", max_concurrency=2), True)[0] == "replace"  # existing names still work


# -- events ---------------------------------------------------------------------------------------

def test_take_events_empties_the_outbox(state):
    running(state)
    assert [e.type for e in state.outbox] == ["service.deploying", "service.started"]
    assert [e.type for e in state.take_events()] == ["service.deploying", "service.started"]
    assert state.outbox == [] and state.take_events() == []


def test_events_keep_the_principal_of_the_operation_that_queued_them_whoever_writes_them(state):
    """An operation's events may be taken by another commit (a crash handled meanwhile, a retry of
    events the log refused): each event keeps the principal it was queued under."""
    alice = {"principal": "tenant:alice/token:abc", "request_id": "r-1"}
    token = acting_for.set(alice)
    try:
        running(state, tenant="alice")
    finally:
        acting_for.reset(token)
    running(state, tenant="bob")  # queued by Solo itself (no operation)
    rows, _ = event_rows(state.take_events(), {"principal": "tenant:carol/token:zzz"}, {})
    assert [(r["tenant"], r["principal"], r["correlation_id"]) for r in rows] == [
        ("alice", "tenant:alice/token:abc", "r-1"), ("alice", "tenant:alice/token:abc", "r-1"),
        ("bob", "solo", ""), ("bob", "solo", "")]
    # events made outside the state (discovery's own) take the writer's principal
    rows, _ = event_rows([Event("discovery.granted", "bob", "kv")], {"principal": "tenant:bob/token:b"}, {})
    assert rows[0]["principal"] == "tenant:bob/token:b"


# -- rebuild from events --------------------------------------------------------------------------

def test_fold_follows_a_services_life(tmp_path):
    from solo.registry.rebuild import fold, load_checkpoint, write_checkpoint

    def ev(i, kind, subject="kv", tenant="acme", **payload):
        return {"id": i, "time": 1.0 * i, "tenant": tenant, "type": kind, "subject": subject, "payload": payload}

    rows = [ev(1, "service.deploying", spec="f1", version="1", generation=1),
            ev(2, "service.started", host="h1", pid=11),
            ev(3, "service.crashed"), ev(4, "service.restarting", attempt=1),
            ev(5, "service.restarted", host="h2", pid=12, restarts=1),
            ev(6, "service.deploying", spec="f2", version="2", generation=2, replaces="1"),
            ev(7, "service.replaced"), ev(8, "service.started", host="h3", pid=13),
            ev(9, "service.suspended"),
            ev(10, "service.deploying", subject="gone", spec="g", version="1", generation=1),
            ev(11, "service.removed", subject="gone"),
            ev(12, "service.deploying", subject="bad", spec="b", version="1", generation=1),
            ev(13, "service.failed", subject="bad", reason="boom"),
            ev(14, "service.deploying", subject="off", tenant="beta", spec="o", version="1", generation=1),
            ev(15, "service.stopped", subject="off", tenant="beta")]
    views = fold(rows[:12])
    write_checkpoint(tmp_path, 12, views)
    last, restored = load_checkpoint(tmp_path)
    views = fold(rows[12:], restored)
    assert last == 12 and set(views) == {("acme", "kv"), ("acme", "bad"), ("beta", "off")}
    kv = views[("acme", "kv")]
    assert (kv.spec, kv.version, kv.generation, kv.wanted, kv.state, kv.host) == ("f2", "2", 2, True, "STOPPED", "")
    bad, off = views[("acme", "bad")], views[("beta", "off")]
    assert (bad.wanted, bad.state, bad.message) == (False, "FAILED", "boom")
    assert (off.wanted, off.state) == (False, "STOPPED")


def test_restore_puts_wanted_services_back_as_restarting(state):
    from solo.registry.rebuild import ServiceView
    record = state.restore(ServiceView("acme", "kv", spec="f", version="3", generation=3), spec("kv"))
    assert (record.state, record.version, record.generation) == ("RESTARTING", "3", 3)
    missing = state.restore(ServiceView("acme", "lost", spec="x", version="1", generation=1), None)
    assert missing.state == "FAILED" and "missing" in missing.message
    kept = state.restore(ServiceView("acme", "off", version="1", generation=1, wanted=False, state="STOPPED"),
                         spec("off"))
    assert kept.state == "STOPPED"
    _, nxt = state.plan_deploy("acme", spec("kv", max_concurrency=9), True)
    assert nxt.generation == 4  # generations continue after a rebuild


# -- hot swap --------------------------------------------------------------------------------------

def test_a_swap_is_planned_beside_the_running_version_and_switches_when_told(state):
    old = running(state)
    types(state)
    current, new, mode = state.plan_swap("acme", spec(source=spec().source + "# v2\n"))
    assert current is old and mode == "side_by_side"
    assert (new.state, new.version, new.generation) == ("STARTING", "2", 2)
    assert state.get("acme", "echo") is old  # nothing routed to it yet
    version = state.route_version
    state.swapped(old, new, placement(pid=200, address="10.0.0.2:5000"), "handed over")
    assert state.get("acme", "echo") is new and state.route_version > version
    assert [r.address for r in state.routes()] == ["10.0.0.2:5000"]
    assert types(state) == ["service.swap_started", "service.swapped"]
    back = state.rolled_back(new, old, "the new version crashed", "the state as at the switch")
    assert back is old and old.state == "RUNNING" and "rolled back from version 2" in old.message
    assert [r.address for r in state.routes()] == ["10.0.0.1:5000"]
    assert types(state) == ["service.rolled_back"]


def test_a_swap_needs_a_running_service_with_different_code(state):
    with pytest.raises(NotFound):
        state.plan_swap("acme", spec())
    running(state)
    with pytest.raises(FailedPrecondition, match="already runs this code"):
        state.plan_swap("acme", spec())
    state.stopping("acme", "echo")
    with pytest.raises(FailedPrecondition, match="is STOPPING"):
        state.plan_swap("acme", spec(source=spec().source + "# v2\n"))


def test_a_quota_that_cannot_hold_two_versions_means_stop_then_start():
    from solo.core.spec import Resources
    from solo.registry.quotas import Quota

    state = RegistryState(quota_for=lambda t: Quota(max_services=10, max_memory_bytes=300))
    big = spec(resources=Resources(memory_bytes=200))
    running(state, s=big)
    _, _, mode = state.plan_swap("acme", spec(source=big.source + "# v2\n", resources=Resources(memory_bytes=200)))
    assert mode == "stop_start"
    with pytest.raises(Overloaded, match="max_memory_bytes"):  # not even alone: refused
        state.plan_swap("acme", spec(source=big.source + "# v3\n", resources=Resources(memory_bytes=400)))


def test_fold_follows_swaps_and_rollbacks():
    from solo.registry.rebuild import fold

    def ev(i, kind, **payload):
        return {"id": i, "time": 1.0 * i, "tenant": "acme", "type": kind, "subject": "kv", "payload": payload}

    views = fold([ev(1, "service.deploying", spec="f1", version="1", generation=1),
                  ev(2, "service.started", host="h1", pid=11),
                  ev(3, "service.swap_started", spec="f2", version="2", generation=2),
                  ev(4, "service.swap_failed", reason="no"),
                  ev(5, "service.swap_started", spec="f3", version="3", generation=3),
                  ev(6, "service.swapped", host="h3", pid=13)])
    view = views[("acme", "kv")]
    assert (view.spec, view.version, view.generation, view.host, view.pending) == ("f3", "3", 3, "h3", {})
    fold([ev(7, "service.rolled_back", spec="f1", version="1", generation=1, host="h1", pid=11)], views)
    assert (view.spec, view.version, view.host, view.state, view.wanted) == ("f1", "1", "h1", "RUNNING", True)


def test_past_versions_are_kept_newest_first_up_to_a_count(tmp_path):
    from solo.registry.history import VersionHistory

    history = VersionHistory(tmp_path / "history", keep=2)
    history.add("acme", "kv", "1", "f1", '{"n": 1}')
    history.add("acme", "kv", "2", "f2", None)
    history.add("acme", "kv", "3", "f3", '{"n": 3}')
    assert [e.version for e in history.list("acme", "kv")] == ["3", "2"]
    assert history.find("acme", "kv", "", current_version="3").version == "2"
    assert history.find("acme", "kv", "3", current_version="4").state == '{"n": 3}'
    assert history.find("acme", "kv", "1", current_version="4") is None
    assert history.list("beta", "kv") == []  # per tenant
    assert oct((tmp_path / "history" / "acme" / "kv.json").stat().st_mode & 0o777) == "0o600"
    history.forget("acme", "kv")
    assert history.list("acme", "kv") == []


def test_a_version_kept_in_a_watch_window_counts_against_the_quota():
    from solo.core.spec import Resources
    from solo.registry.quotas import Quota

    state = RegistryState(quota_for=lambda t: Quota(max_services=10, max_memory_bytes=300))
    running(state, s=spec(resources=Resources(memory_bytes=100)))
    state.reserved[("acme", "echo")] = Resources(memory_bytes=150)  # the old version, kept ready
    with pytest.raises(Overloaded, match="max_memory_bytes"):
        state.plan_deploy("acme", spec(name="other", resources=Resources(memory_bytes=100)), False)
    del state.reserved[("acme", "echo")]
    state.plan_deploy("acme", spec(name="other", resources=Resources(memory_bytes=100)), False)
