"""Tenant quotas end to end: deploys past a quota and calls past max_concurrent_calls are refused
at once with RESOURCE_EXHAUSTED naming the quota; other tenants are not affected.
(tests/conftest.py: [quotas.tenants.quotaco] max_services 3, max_memory_bytes 300 MiB,
max_concurrent_calls 1.)"""
from __future__ import annotations

import threading
import time

import pytest

from solo import Overloaded, SoloClient
from tests.conftest import in_flight, source, wait_for

SLOW = source("""
    import time

    class Slow:
        def wait(self, seconds):
            time.sleep(seconds)
            return seconds
""")


@pytest.fixture(scope="module")
def quotaco(solo, operator):
    with SoloClient(solo.address, operator.mint_token("quotaco")) as client:
        yield client


def test_a_deploy_past_the_memory_quota_is_refused_and_changes_nothing(quotaco, alice):
    quotaco.deploy(SLOW, "mem-a", memory=200 << 20)
    try:
        with pytest.raises(Overloaded, match=r"quota max_memory_bytes: this deploy asks for 0.195 GiB, the tenant's "
                                             r"running services already use 0.195 GiB of 0.293 GiB"):
            quotaco.deploy(SLOW, "mem-b", memory=200 << 20)
        assert [s["name"] for s in quotaco.list()] == ["mem-a"]
        alice.deploy(SLOW, "mem-b", memory=200 << 20)  # another tenant: its own quota
        alice.stop("mem-b", remove=True)
        quotaco.stop("mem-a")  # stopped services request nothing: the memory is free again
        quotaco.deploy(SLOW, "mem-b", memory=200 << 20)
        with pytest.raises(Overloaded, match="quota max_services: the tenant has 3 services"):
            quotaco.deploy(SLOW, "mem-c")
            quotaco.deploy(SLOW, "mem-d")
    finally:
        for name in ("mem-a", "mem-b", "mem-c"):
            try:
                quotaco.stop(name, remove=True)
            except Exception:  # noqa: BLE001 - not all of them exist
                pass


def test_calls_past_max_concurrent_calls_fail_fast_with_retry_after(quotaco, alice, name):
    quotaco.deploy(SLOW, name, max_concurrency=4)
    try:
        first = threading.Thread(target=quotaco.call, args=(name, "wait", 2.0))
        first.start()
        wait_for(lambda: in_flight(quotaco, name) >= 1)
        started = time.monotonic()
        with pytest.raises(Overloaded, match="quota max_concurrent_calls") as err:
            quotaco.call(name, "wait", 0)
        assert time.monotonic() - started < 1.5 and err.value.retry_after > 0  # fast, not queued
        first.join()
        assert quotaco.call(name, "wait", 0) == 0  # the slot is free again
    finally:
        quotaco.stop(name, remove=True)
