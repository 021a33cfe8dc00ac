"""Overload end to end: far more concurrent calls than a gateway admits get fast RESOURCE_EXHAUSTED
answers with a retry-after, never timeouts, and the admitted ones all succeed.

A second gateway with small limits (queue of 4 per service, 8 calls in flight, fixed) runs against
the session's registry, so the session gateway's generous defaults stay as they are."""
from __future__ import annotations

import asyncio
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
    from solo.registry.handle import RegistryHandle
    from solo.runtime.event_log_actor import EventLogHandle
    from solo.security.tokens import authenticator

    base = solo.supervisor.config
    config = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0}),
        "limits": base.limits.model_copy(update={"service_queue_limit": 4, "max_in_flight": 8,
                                                 "adaptive_in_flight": False})})
    return solo.run(start_gateway(config, RegistryHandle(solo.supervisor.registry_actor),
                                  authenticator(config, KeyRing(base.data_dir / "keys")),
                                  EventLogHandle(config.namespace)))


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


def test_overload_gets_fast_errors_with_a_retry_after_not_timeouts(solo, operator, name):
    token = operator.mint_token("overload")
    gateway = small_gateway(solo)
    try:
        with SoloClient(solo.address, token) as client:
            client.deploy(SLOW, name, max_concurrency=2)
        with SoloClient(f"127.0.0.1:{gateway.port}", token) as small:  # the small gateway follows the route too
            deadline = time.monotonic() + 10
            while True:
                try:
                    small.call(name, "wait", 0)
                    break
                except SoloError:
                    assert time.monotonic() < deadline, "the second gateway never routed to the service"
                    time.sleep(0.05)
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
