"""A crashing service: callers get UNAVAILABLE at once, Solo restarts it with backoff, then gives up."""
from __future__ import annotations

import time

import pytest

from solo import Unavailable
from solo.events import read_events
from tests.conftest import source
from tests.conftest import wait_for as _wait_for

CRASHER = source("""
    import os, threading, time, uuid

    class Crasher:
        def __init__(self):
            self.process = uuid.uuid4().hex  # one per process (inside its cell every service is pid 2)

        def ping(self):
            return self.process

        def crash(self):
            os._exit(1)

        def crash_soon(self):
            threading.Timer(0.2, os._exit, args=(1,)).start()
            return "bye"
""")


def wait_for(predicate, timeout=30.0, **options):
    return _wait_for(predicate, timeout, **options)


def test_crash_is_unavailable_then_restarted(alice, name, solo):
    first_pid = alice.deploy(CRASHER, name)["pid"]
    first_process = alice.call(name, "ping")
    started = time.monotonic()
    with pytest.raises(Unavailable):
        alice.call(name, "crash", _timeout=20)
    assert time.monotonic() - started < 5  # an error, not a hang

    def restarted():
        info = alice.get(name)
        return info if info["state"] == "RUNNING" and info["restarts"] == 1 else None

    info = wait_for(restarted)
    assert info["pid"] != first_pid
    assert alice.call(name, "ping") != first_process
    wait_for(lambda: "service.restarted" in [e["type"] for e in read_events(
        solo.supervisor.config.data_dir, subject=name).to_pylist()])
    rows = read_events(solo.supervisor.config.data_dir, subject=name).to_pylist()
    assert [e["type"] for e in rows][:5] == ["service.deploying", "service.started", "service.crashed",
                                             "service.restarting", "service.restarted"]
    crash = rows[2]["id"]
    assert rows[3]["causation_id"] == crash and rows[4]["causation_id"] == crash  # why it restarted
    assert rows[0]["causation_id"] is None
    alice.stop(name, remove=True)


def test_calls_while_crashed_fail_fast(alice, name):
    alice.deploy(CRASHER, name, max_restarts=0)
    assert alice.call(name, "crash_soon") == "bye"
    info = wait_for(lambda: (i := alice.get(name))["state"] == "FAILED" and i)
    assert "restart limit 0 reached" in info["message"]

    def fails_fast_saying_failed():
        started = time.monotonic()
        with pytest.raises(Unavailable) as err:
            alice.call(name, "ping", _timeout=20)
        assert time.monotonic() - started < 10  # fast: far below the 20 s deadline it would otherwise wait out
        return "has failed" in err.value.message  # once the gateway's routes show FAILED (a long poll away)

    wait_for(fails_fast_saying_failed, timeout=15)


def test_restart_limit_reached_marks_failed(alice, name):
    alice.deploy(CRASHER, name, max_restarts=1)
    with pytest.raises(Unavailable):
        alice.call(name, "crash")
    wait_for(lambda: alice.get(name)["state"] == "RUNNING" and alice.get(name)["restarts"] == 1)
    # the gateway routes to the restarted process once its route table has it: a call before that is answered
    # "restarting" without reaching the service, and the crash below would crash nothing
    wait_for(lambda: alice.call(name, "ping"), tolerate=(Unavailable,))
    with pytest.raises(Unavailable):
        alice.call(name, "crash")
    info = wait_for(lambda: (i := alice.get(name))["state"] == "FAILED" and i)
    assert info["restarts"] == 1 and "restart limit 1 reached" in info["message"]


def test_a_crash_does_not_touch_other_services(alice, bob, name):
    alice.deploy(CRASHER, name)
    bob.deploy(CRASHER, name)
    bob_pid = bob.call(name, "ping")
    with pytest.raises(Unavailable):
        alice.call(name, "crash")
    assert bob.call(name, "ping") == bob_pid
    assert bob.get(name)["restarts"] == 0
    alice.stop(name, remove=True)
    bob.stop(name, remove=True)


def test_a_restart_that_fails_counts_against_the_limit(alice, name):
    # the service starts only before a moment passed in its config (each restart is a new cell: no file of the
    # first start survives it, so time is what tells a restart apart)
    start_before = time.time() + 8.0
    alice.deploy(source("""
        import os, time

        class OnlyOnce:
            def __init__(self):
                if time.time() > self.context.config["start_before"]:
                    raise RuntimeError("cannot start twice")

            def crash(self):
                os._exit(1)
    """), name, max_restarts=2, config={"start_before": start_before})
    time.sleep(max(0.0, start_before - time.time() + 0.1))
    with pytest.raises(Unavailable):
        alice.call(name, "crash")
    info = wait_for(lambda: (i := alice.get(name))["state"] == "FAILED" and i)
    assert info["restarts"] == 2
    assert "restart failed" in info["message"] and "cannot start twice" in info["message"]


def test_unhealthy_at_start_is_refused(alice, name):
    from solo import ServiceFailed
    with pytest.raises(ServiceFailed, match="health check failed: health\\(\\) returned False"):
        alice.deploy("class Sick:\n    def health(self):\n        return False\n    def f(self):\n        return 1\n",
                     name)
    assert alice.get(name)["state"] == "FAILED"
