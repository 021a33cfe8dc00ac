"""A host does not trust its cell to behave while it starts or answers: memory used while loading counts,
a hook that never answers is a clear error instead of a hang, and a warm host whose idle cell died still
serves (real Ray, real hosts, real cells)."""
from __future__ import annotations

import os
import signal
import time

import pytest
import ray

from solo import SoloError
from solo.core.spec import Resources
from solo.errors import DeadlineExceeded, ServiceFailed
from solo.runtime import sandbox
from solo.runtime.host import HEALTH_SECONDS
from solo.runtime.launcher import Launcher
from tests.conftest import source

GREEDY_AT_START = source("""
    import time

    blob = []
    for _ in range(40):  # 160 MiB, resident, far over the limit, while the module loads...
        blob.append(b"x" * (4 << 20))
        time.sleep(0.05)
    time.sleep(1)
    del blob  # ...and given back before the load answers

    class Greedy:
        def hello(self):
            return "hi"
""")

HANGS = source("""
    import asyncio

    class Hangs:
        def __init__(self):
            self.hang = False

        def arm(self):
            self.hang = True

        async def health(self):
            if self.hang:
                await asyncio.sleep(3600)

        async def restore(self, state):
            await asyncio.sleep(3600)
""")

PLAIN = source("""
    class Plain:
        def hello(self):
            return "hi"
""")


def host_of(solo, tenant: str, name: str):
    """The Ray handle of the host serving `name` (found by the address the gateway routes to)."""
    route = solo.supervisor.gateway.dispatcher.routes.get(tenant, name)
    launcher = Launcher(solo.supervisor.config.namespace)
    for host in launcher.host_names():
        handle = launcher.find(host)
        described = ray.get(handle.describe.remote(), timeout=10) if handle is not None else None
        if described and described["address"] == route.address:
            return handle
    raise AssertionError(f"no host serves {name}")


def test_memory_allocated_while_loading_counts_against_the_limit(alice, name):
    started = time.monotonic()
    with pytest.raises(SoloError) as failed:
        alice.deploy(GREEDY_AT_START, name, memory=64 << 20)
    assert "while starting" in str(failed.value) and "memory limit of 64 MiB" in str(failed.value)
    assert time.monotonic() - started < 30
    alice.stop(name, remove=True)


def test_a_hook_that_never_answers_is_a_clear_error_not_a_hang(solo, alice, name):
    alice.deploy(HANGS, name)
    host = host_of(solo, "alice", name)
    assert ray.get(host.health.remote(), timeout=10)[0] is True
    alice.call(name, "arm")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="health"):
        ray.get(host.health.remote(), timeout=HEALTH_SECONDS + 20)
    assert time.monotonic() - started < HEALTH_SECONDS + 10
    with pytest.raises(DeadlineExceeded, match=r"restore\(\) within 1s"):
        ray.get(host.restore.remote("{}", 1.0), timeout=20)
    assert alice.call(name, "arm") is None  # the service still serves calls
    alice.stop(name, remove=True)


def test_a_warm_host_whose_idle_cell_died_starts_a_new_one_and_loads(solo):
    config = solo.supervisor.config
    launcher = Launcher(config.namespace, "127.0.0.1", sandbox.sandbox_options(config.runtime))
    handle = launcher.create(Resources())
    try:
        placement = ray.get(handle.ready.remote(), timeout=60)
        os.kill(placement["cell_pid"], signal.SIGKILL)  # the idle cell dies (the OOM killer, an operator, a bug)
        time.sleep(0.5)
        loaded = ray.get(handle.load.remote("alice", "plain", "1", PLAIN, "plain.py", "", {}, "", {}, 4),
                         timeout=60)
        assert loaded["cell_pid"] != placement["cell_pid"] and loaded["methods"] == ["hello"]
        assert ray.get(handle.health.remote(), timeout=20) == (True, "")
        ray.get(handle.stop.remote(1.0), timeout=20)
    finally:
        launcher.kill(handle)


def test_a_load_error_is_still_the_services_own(solo):
    """A cell that exits while loading (the service's code) is still a ServiceFailed naming the exit."""
    config = solo.supervisor.config
    launcher = Launcher(config.namespace, "127.0.0.1", sandbox.sandbox_options(config.runtime))
    handle = launcher.create(Resources())
    try:
        ray.get(handle.ready.remote(), timeout=60)
        with pytest.raises(ServiceFailed, match="exited with code 3 while starting"):
            ray.get(handle.load.remote("alice", "quits", "1", "import os\nos._exit(3)\n", "quits.py", "", {}, "",
                                       {}, 4), timeout=60)
    finally:
        launcher.kill(handle)
