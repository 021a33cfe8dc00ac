"""Overload end to end: far more concurrent calls than a gateway admits get fast RESOURCE_EXHAUSTED
answers with a retry-after, never timeouts, and the admitted ones all succeed; a tenant whose callers
ignore the retry-after gets its refusals only once the retry-after has passed.

A second gateway with small limits (queue of 4 per service, 8 calls in flight, fixed) runs against
the session's registry, so the session gateway's generous defaults stay as they are."""
from __future__ import annotations

import asyncio
import re
import time

import grpc

from solo import SoloClient, SoloError
from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from solo.security.keys import KeyRing
from tests.conftest import source

SLOW = source("""
    import asyncio

    class Slow:
        async def wait(self, seconds):
            await asyncio.sleep(seconds)
            return seconds
""")


def small_gateway(solo):
    from solo.gateway.server import start_gateway
    from solo.security.tokens import authenticator

    base = solo.supervisor.config
    config = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0}),
        "limits": base.limits.model_copy(update={"service_queue_limit": 4, "max_in_flight": 8,
                                                 "adaptive_in_flight": False})})
    return solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                  authenticator(config, KeyRing(base.data_dir / "keys")),
                                  solo.supervisor.event_log_handle()))


async def storm(address: str, token: str, service: str, callers: int) -> list[tuple[str, float, str]]:
    """`callers` concurrent calls of 0.3 s each with a 10 s deadline: (status, seconds, retry-after-ms)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = solo_pb2_grpc.GatewayStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)

        async def one():
            started = time.perf_counter()
            try:
                await stub.Invoke(pb.InvokeRequest(service=service, method="wait", json="[0.3]"),
                                  metadata=metadata, timeout=10)
                return "OK", time.perf_counter() - started, ""
            except grpc.aio.AioRpcError as exc:
                trailers = dict(exc.trailing_metadata() or ())
                return exc.code().name, time.perf_counter() - started, trailers.get("retry-after-ms", "")
        return await asyncio.gather(*(one() for _ in range(callers)))


def deployed(solo, gateway, token: str, name: str) -> None:
    """Deploy SLOW (2 calls at a time) as `name` and wait until the small gateway routes to it too."""
    with SoloClient(solo.address, token) as client:
        client.deploy(SLOW, name, max_concurrency=2)
    with SoloClient(f"127.0.0.1:{gateway.port}", token) as small:
        deadline = time.monotonic() + 10
        while True:
            try:
                small.call(name, "wait", 0)
                return
            except SoloError:
                assert time.monotonic() < deadline, "the second gateway never routed to the service"
                time.sleep(0.05)


def test_overload_gets_fast_errors_with_a_retry_after_not_timeouts(solo, operator, name):
    token = operator.mint_token("overload")
    gateway = small_gateway(solo)
    try:
        deployed(solo, gateway, token, name)
        results = asyncio.run(storm(f"127.0.0.1:{gateway.port}", token, name, 300))
    finally:
        solo.run(gateway.stop(0.5))
    codes = [code for code, _, _ in results]
    ok = [seconds for code, seconds, _ in results if code == "OK"]
    shed = sorted(seconds for code, seconds, _ in results if code == "RESOURCE_EXHAUSTED")
    print(f"{len(ok)} admitted, {len(shed)} shed; slowest shed answer {shed[-1]:.3f} s, slowest admitted "
          f"{max(ok):.3f} s")
    assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, f"other answers than OK and shed: {set(codes)}"
    assert 2 <= len(ok) <= 2 + 4 + 8, "admitted more than the service's concurrency plus its queue (and slack)"
    assert all(retry and int(retry) > 0 for code, _, retry in results if code == "RESOURCE_EXHAUSTED")
    assert shed[len(shed) // 2] < 1.0, "a shed call waited instead of being answered at once"
    assert max(ok) < 9, "an admitted call came close to its deadline"


async def hammer(address: str, token: str, service: str, callers: int, seconds: float,
                 bystander: tuple[str, str]) -> tuple[list[tuple[float, str, float, str]], list[str]]:
    """`callers` callers that call again as soon as they are answered, shed or not (0.3 s calls, 3 s
    deadline), starting calls for `seconds`: (started, status, seconds, details) per call. Meanwhile the
    bystander (token, service) calls its own service one call at a time: its statuses."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = solo_pb2_grpc.GatewayStub(channel)
        t0 = time.perf_counter()
        results, seen = [], []

        async def one():
            while (started := time.perf_counter()) < t0 + seconds:
                try:
                    await stub.Invoke(pb.InvokeRequest(service=service, method="wait", json="[0.3]"),
                                      metadata=(("authorization", f"Bearer {token}"),), timeout=3)
                    results.append((started - t0, "OK", time.perf_counter() - started, ""))
                except grpc.aio.AioRpcError as exc:
                    results.append((started - t0, exc.code().name, time.perf_counter() - started, exc.details()))

        async def polite():
            while time.perf_counter() < t0 + seconds:
                try:
                    await stub.Invoke(pb.InvokeRequest(service=bystander[1], method="wait", json="[0]"),
                                      metadata=(("authorization", f"Bearer {bystander[0]}"),), timeout=3)
                    seen.append("OK")
                except grpc.aio.AioRpcError as exc:
                    seen.append(f"{exc.code().name}: {exc.details()}")
                await asyncio.sleep(0.05)
        await asyncio.gather(polite(), *(one() for _ in range(callers)))
        return results, seen


def test_a_tenant_whose_callers_ignore_the_retry_after_gets_its_refusals_late_and_a_neighbour_is_unaffected(
        solo, operator, name):
    from solo import metrics

    token, other = operator.mint_token("hammerer"), operator.mint_token("bystander")
    gateway = small_gateway(solo)
    counted = metrics.REFUSALS_HELD.labels("hammerer")._value.get()
    try:
        deployed(solo, gateway, token, name)
        deployed(solo, gateway, other, name)  # the same name, another tenant's service
        results, seen = asyncio.run(hammer(f"127.0.0.1:{gateway.port}", token, name, 40, 4.0, (other, name)))
    finally:
        solo.run(gateway.stop(0.5))
    codes = {code for _, code, _, _ in results}
    shed = [(started, seconds, details) for started, code, seconds, details in results if code != "OK"]
    held = [(started, seconds, float(re.search(r"answered after ([0-9.]+) s", details).group(1)))
            for started, seconds, details in shed if "answered after" in details]
    early = sorted(seconds for started, seconds, _ in shed if started < 0.5)
    print(f"{len(results)} calls, {len(shed)} shed, {len(held)} of them held (the first started at "
          f"{min(held)[0] if held else 0:.2f} s); bystander: {len(seen)} calls")
    assert codes <= {"OK", "RESOURCE_EXHAUSTED"}, f"a held refusal must end before the deadline, not as {codes}"
    assert early and early[len(early) // 2] < 0.5, "the flood's first refusals were not answered at once"
    assert held, "callers that never wait their retry-after kept getting their refusals at once"
    assert all(seconds >= waited - 0.01 for _, seconds, waited in held), "a refusal came sooner than it said"
    assert max(waited for _, _, waited in held) >= 0.5, "refusals were held, but never for long"
    assert metrics.REFUSALS_HELD.labels("hammerer")._value.get() - counted == len(held)
    assert metrics.REFUSALS_HELD.labels("bystander")._value.get() == 0
    assert seen and set(seen) == {"OK"}, f"the neighbour was disturbed: {set(seen)}"
