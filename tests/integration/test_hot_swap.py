"""Hot swap end to end: state handover under load, automatic and manual rollback, rejected versions,
quota fallback, events, and tenant isolation."""
from __future__ import annotations

import threading
import time

import pytest

from solo import FailedPrecondition, NotFound, PermissionDenied, SoloClient, SoloError
from tests.conftest import source
from tests.conftest import wait_for as _wait_for

COUNTER = """
    import os
    import threading
    import time

    class Counter:
        def __init__(self):
            self.value = 0

        def incr(self):
            {incr}
            self.value += 1
            return self.value

        def get(self):
            return self.value

        def which(self):
            return "{tag}"

        def start(self):
            {start}

        def snapshot(self):
            return {{"value": self.value}}

        def restore(self, state):
            self.value = state["value"]
"""


def counter(tag: str, incr: str = "pass", start: str = "pass") -> str:
    return source(COUNTER.format(tag=tag, incr=incr, start=start))


CRASH_LATER = "threading.Thread(target=lambda: (time.sleep({}), os._exit(1)), daemon=True).start()"


class Load:
    """Callers incrementing the counter as fast as they can until stopped; counts what succeeded."""

    def __init__(self, client: SoloClient, name: str, callers: int = 16):
        self.client, self.name = client, name
        self.ok = 0
        self.failures: list[str] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(callers)]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                self.client.call(self.name, "incr", _timeout=30)
                with self._lock:
                    self.ok += 1
                    self.slowest = max(self.slowest, time.perf_counter() - started)
            except SoloError as exc:
                with self._lock:
                    self.failures.append(f"{exc.code}: {exc.message}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(60)


def wait_for(predicate, timeout=30.0, **options):
    return _wait_for(predicate, timeout, **{"every": 0.05, "tolerate": (SoloError,), **options})


def events_of(client: SoloClient, name: str) -> list[dict]:
    return client.events(subject=name, limit=10_000)


def test_a_swap_under_load_fails_no_call_and_loses_no_update(alice, name):
    alice.deploy(counter("v1"), name, max_concurrency=4)
    with Load(alice, name) as load:
        wait_for(lambda: load.ok > 200)
        result = alice.swap(name, counter("v2"), watch_seconds=1)
        after_swap = load.ok
        wait_for(lambda: load.ok > after_swap + 200)
    print(f"{load.ok} calls, slowest {load.slowest * 1e3:.0f} ms, switch after {result['switch_seconds']:.3f} s")
    assert load.failures == []
    assert result["state"] == "handed over" and result["mode"] == "side_by_side"
    assert result["previous_version"] == "1" and result["service"]["version"] == "2"
    assert alice.call(name, "which") == "v2"
    assert alice.call(name, "get") == load.ok  # every increment counted exactly once across the switch
    wait_for(lambda: any(e["type"] == "service.swap_succeeded" for e in events_of(alice, name)))
    kinds = [e["type"] for e in events_of(alice, name)]
    for step in ("service.swap_started", "service.swap_ready", "service.swapped", "service.swap_succeeded"):
        assert step in kinds
    alice.stop(name, remove=True)


def test_a_version_that_crashes_after_the_switch_is_rolled_back_with_its_state(alice, name):
    alice.deploy(counter("v1"), name)
    for _ in range(7):
        alice.call(name, "incr")
    result = alice.swap(name, counter("v2", start=CRASH_LATER.format(5)), watch_seconds=30)
    assert alice.call(name, "which") == "v2" and alice.call(name, "get") == 7
    switched = time.monotonic()
    wait_for(lambda: alice.call(name, "which") == "v1", timeout=30)
    print(f"rolled back {time.monotonic() - switched:.2f} s after the switch")
    assert alice.call(name, "get") == 7  # the state it had at the switch
    info = alice.get(name)
    assert info["version"] == "1" and info["state"] == "RUNNING"
    # whichever sees the dead process first says why: the crash watcher, or the watch window's health check
    crash = ("the new version crashed", "the service process exited")
    assert "rolled back from version 2: " in info["message"] and any(c in info["message"] for c in crash), info
    back = wait_for(lambda: [e for e in events_of(alice, name) if e["type"] == "service.rolled_back"])
    assert back[-1]["payload"]["from_version"] == result["service"]["version"]
    assert any(c in back[-1]["payload"]["reason"] for c in ("crashed", "the service process exited"))
    alice.stop(name, remove=True)


def test_a_version_that_fails_to_start_never_receives_traffic(alice, name):
    alice.deploy(counter("v1"), name, max_concurrency=4)
    broken = counter("v2", start="raise RuntimeError('no database')")
    with Load(alice, name, callers=4) as load:
        wait_for(lambda: load.ok > 50)
        with pytest.raises(SoloError, match="swap rejected, version 1 keeps serving: .*RuntimeError: no database"):
            alice.swap(name, broken)
        with pytest.raises(SoloError, match="swap rejected.*SyntaxError|syntax error"):
            alice.swap(name, "class Broken(:\n    pass\n")
        before = load.ok
        wait_for(lambda: load.ok > before + 50)
    assert load.failures == []
    assert alice.call(name, "which") == "v1" and alice.call(name, "get") == load.ok
    assert alice.get(name)["version"] == "1"
    failed = wait_for(lambda: [e for e in events_of(alice, name) if e["type"] == "service.swap_failed"])
    assert "no database" in failed[0]["payload"]["reason"]
    alice.stop(name, remove=True)


def test_a_version_failing_its_calls_is_rolled_back_and_hands_its_state_back(alice, name):
    alice.deploy(counter("v1"), name)
    alice.call(name, "incr")
    failing = counter("v2", incr="if self.value >= 3: raise ValueError('bad release')")
    alice.swap(name, failing, watch_seconds=30)
    alice.call(name, "incr")
    alice.call(name, "incr")  # value 3 on v2
    for _ in range(40):
        try:
            alice.call(name, "incr")
        except SoloError:
            pass
    wait_for(lambda: alice.call(name, "which") == "v1", timeout=30)
    assert alice.call(name, "get") == 3  # the updates made on v2 came back with the rollback
    back = wait_for(lambda: [e for e in events_of(alice, name) if e["type"] == "service.rolled_back"])[-1]
    assert "failed" in back["payload"]["reason"] and "max_error_rate" in back["payload"]["reason"]
    assert back["payload"]["state"] == "handed back from the new version"
    alice.stop(name, remove=True)


def test_rollback_by_hand_during_the_window_and_to_an_older_version(alice, name):
    alice.deploy(counter("v1"), name, version="a")
    alice.call(name, "incr")
    alice.swap(name, counter("v2"), version="b", watch_seconds=60)
    alice.call(name, "incr")
    back = alice.rollback(name)  # the kept version, at once, with the state
    assert back["service"]["version"] == "a" and back["from_version"] == "b"
    assert alice.call(name, "which") == "v1" and alice.call(name, "get") == 2
    alice.swap(name, counter("v2"), version="b", watch_seconds=0)
    alice.swap(name, counter("v3"), version="c", watch_seconds=0)
    alice.call(name, "incr")
    with pytest.raises(NotFound, match="version 'zzz' of .* is not kept"):
        alice.rollback(name, to_version="zzz")
    back = alice.rollback(name, to_version="a")  # a past version's code, today's state
    assert back["service"]["version"] == "a" and alice.call(name, "which") == "v1"
    assert alice.call(name, "get") == 3
    alice.stop(name, remove=True)


def test_a_service_without_state_hooks_starts_fresh_and_the_user_is_told(alice, name):
    plain = source("""
        class Plain:
            def __init__(self):
                self.hits = 0

            def hit(self):
                self.hits += 1
                return self.hits
    """)
    alice.deploy(plain, name)
    alice.call(name, "hit")
    result = alice.swap(name, plain.replace("self.hits += 1", "self.hits += 10"), watch_seconds=0)
    assert result["state"] == "fresh: the old version has no snapshot()"
    assert alice.call(name, "hit") == 10
    alice.stop(name, remove=True)


def test_a_quota_too_small_for_two_versions_swaps_stop_then_start(solo, operator, name):
    with SoloClient(solo.address, operator.mint_token("quotaco")) as quotaco:  # max_memory_bytes 300 MiB
        quotaco.deploy(counter("v1"), name, memory=200 << 20)
        try:
            quotaco.call(name, "incr")
            result = quotaco.swap(name, counter("v2"), watch_seconds=30)
            assert result["mode"] == "stop_start" and result["watch_seconds"] == 0
            assert result["state"] == "handed over"
            assert quotaco.call(name, "which") == "v2" and quotaco.call(name, "get") == 1
        finally:
            quotaco.stop(name, remove=True)


def test_swaps_are_tenant_scoped_and_need_the_swap_right(solo, operator, alice, bob, name):
    alice.deploy(counter("v1"), name)
    with pytest.raises(NotFound):
        bob.swap(name, counter("evil"))
    with pytest.raises(NotFound):
        bob.rollback(name)
    no_swap = operator.mint_token("alice", rights=["invoke", "deploy", "discover"])
    with SoloClient(solo.address, no_swap) as limited:
        with pytest.raises(PermissionDenied):
            limited.swap(name, counter("v2"))
        with pytest.raises(PermissionDenied):
            limited.rollback(name)
    assert alice.call(name, "which") == "v1"
    with pytest.raises(FailedPrecondition, match="already runs this code"):
        alice.swap(name, counter("v1"))
    alice.stop(name, remove=True)
    with pytest.raises(NotFound):
        alice.swap(name, counter("v2"))


def test_every_gateway_follows_a_swap_without_failing_a_call(solo, alice, name):
    from solo.gateway.server import start_gateway
    from solo.security.keys import KeyRing
    from solo.security.tokens import authenticator

    base = solo.supervisor.config
    config = base.model_copy(update={"gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0})})
    second = solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                    authenticator(config, KeyRing(base.data_dir / "keys")),
                                    solo.supervisor.event_log_handle()))
    try:
        alice.deploy(counter("v1"), name, max_concurrency=4)
        with SoloClient(f"127.0.0.1:{second.port}", alice.token) as via_second, \
                Load(alice, name, callers=8) as first_load, Load(via_second, name, callers=8) as second_load:
            wait_for(lambda: first_load.ok > 100 and second_load.ok > 100)
            alice.swap(name, counter("v2"), watch_seconds=0)
            seen = second_load.ok
            wait_for(lambda: second_load.ok > seen + 100)
            assert via_second.call(name, "which") == "v2"
        assert first_load.failures == [] and second_load.failures == []
        assert alice.call(name, "get") == first_load.ok + second_load.ok
    finally:
        solo.run(second.stop(0.5))
        alice.stop(name, remove=True)


def test_a_version_whose_health_check_fails_in_the_window_is_rolled_back(alice, name):
    alice.deploy(counter("v1"), name)
    alice.call(name, "incr")
    sick = counter("v2").replace("    def which(self):", """    def health(self):
        return time.monotonic() < self.born + 2

    def which(self):""").replace("self.value = 0", "self.value = 0\n        self.born = time.monotonic()")
    alice.swap(name, sick, watch_seconds=30)
    assert alice.call(name, "which") == "v2"
    alice.call(name, "incr")
    wait_for(lambda: alice.call(name, "which") == "v1", timeout=20)
    assert alice.call(name, "get") == 2  # v2 was alive: its state came back
    back = wait_for(lambda: [e for e in events_of(alice, name) if e["type"] == "service.rolled_back"])[-1]
    assert "health check" in back["payload"]["reason"] and back["payload"]["seconds"] < 5
    alice.stop(name, remove=True)


def test_a_service_cannot_fake_the_moved_answer(alice, name):
    faker = source("""
        from solo.errors import Unavailable

        class Faker:
            def __init__(self):
                self.runs = 0

            def trick(self):
                self.runs += 1
                raise Unavailable("pretend", exception_type="Moved")

            def count(self):
                return self.runs
    """)
    alice.deploy(faker, name)
    started = time.monotonic()
    with pytest.raises(SoloError) as err:
        alice.call(name, "trick")
    assert err.value.code == "UNAVAILABLE" and time.monotonic() - started < 2  # not re-sent for 5 s
    assert alice.call(name, "count") == 1  # it ran once
    alice.stop(name, remove=True)
