"""Memory limits Solo enforces itself: a leaking service is stopped and reported while its
neighbour keeps serving; `solo status` says how the limit is enforced."""
from __future__ import annotations

import json
import threading
import time

import pytest

from solo import SoloError
from solo.events import read_events
from tests.conftest import EXAMPLES, source
from tests.conftest import wait_for as _wait_for

HOG = source("""
    import time

    class Hog:
        def __init__(self):
            self.chunks = []

        def leak(self, megabytes, step=10):
            for _ in range(megabytes // step):  # a steady leak, 10 MiB every 50 ms
                self.chunks.append(bytearray(b"\\x01") * (step << 20))
                time.sleep(0.05)
            return len(self.chunks) * step

        def size(self):
            return len(self.chunks)
""")


def wait_for(predicate, timeout=60.0, **options):
    return _wait_for(predicate, timeout, **{"every": 0.2, **options})


def test_a_memory_hog_is_stopped_and_reported_while_its_neighbour_keeps_serving(solo, alice, bob, name):
    alice.deploy(HOG, name, memory=150 << 20)
    bob.deploy(EXAMPLES / "echo.py", name)
    info = alice.get(name)
    assert "watchdog" in info["limits"], info  # and the cgroup where the machine allows it
    print("enforced:", info["limits"])
    served, failures, stop = [], [], threading.Event()

    def neighbour():
        while not stop.is_set():
            try:
                served.append(bob.call(name, "echo", "still here"))
            except SoloError as exc:  # noqa: PERF203 - any failure of the neighbour fails the test
                failures.append(exc)
            time.sleep(0.02)

    caller = threading.Thread(target=neighbour)
    caller.start()
    try:
        with pytest.raises(SoloError):
            alice.call(name, "leak", 400)  # never gets to 400 MiB: the host is ended past 150
        rows = wait_for(lambda: read_events(solo.supervisor.config.data_dir, tenant="alice", subject=name,
                                            type="service.limit_exceeded").to_pylist())
        payload = json.loads(rows[0]["payload"])
        assert payload["limit"] == "memory" and payload["limit_bytes"] == 150 << 20
        assert 150 << 20 < payload["used_bytes"] < 260 << 20 and payload["policy"] == "restart"
        assert payload["rss_bytes"] == payload["baseline_bytes"] + payload["used_bytes"]
        back = wait_for(lambda: (i := alice.get(name))["state"] == "RUNNING" and i["restarts"] == 1 and i)
        assert "memory limit exceeded" in back["message"] or back["message"] == ""
        assert alice.call(name, "size") == 0  # restarted fresh, within its limit
    finally:
        stop.set()
        caller.join()
        alice.stop(name, remove=True)
        bob.stop(name, remove=True)
    assert not failures and len(served) > 10
    types = [r["type"] for r in read_events(solo.supervisor.config.data_dir, tenant="alice", subject=name).to_pylist()]
    assert types.index("service.limit_exceeded") < types.index("service.crashed") < types.index("service.restarted")


CPU_HOG = source("""
    import time

    class Spin:
        def spin(self, seconds):
            end = time.time() + seconds
            n = 0
            while time.time() < end:
                n += 1
            return n
""")


def test_a_cpu_hog_is_held_to_its_quota_and_its_neighbour_stays_responsive(alice, bob, name):
    alice.deploy(CPU_HOG, name, num_cpus=0.25, max_concurrency=4)
    bob.deploy(EXAMPLES / "echo.py", name)
    enforced = alice.get(name)["limits"]
    print("enforced:", enforced)
    hogs = [threading.Thread(target=alice.call, args=(name, "spin", 4.0)) for _ in range(4)]
    latencies: list[float] = []
    try:
        for t in hogs:
            t.start()
        time.sleep(0.5)
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            t0 = time.monotonic()
            assert bob.call(name, "echo", "x") == "x"
            latencies.append(time.monotonic() - t0)
            time.sleep(0.02)
        for t in hogs:
            t.join()
    finally:
        alice.stop(name, remove=True)
        bob.stop(name, remove=True)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert len(latencies) > 30 and p99 < 0.5, (len(latencies), p99)  # generous: unloaded p99 is a few ms
    if "cgroup" in enforced:
        assert "cpu: cgroup" in enforced  # the quota, not just Ray's logical num_cpus
