"""The Logs RPC: a service's output, kept by the registry from its hosts, read and followed by its tenant.

A plain async generator (like ListServices), so the REST gateway's SSE route can drive the same method. Lines come
from the registry in pages (at most 5,000 lines / 1 MiB each, registry/logs.py), so what one stream holds in the
gateway is one page whatever the service writes. A client that reads slowly is paced by gRPC's flow control; if
it falls behind the service's rotation it is told how many lines it missed, and one that takes nothing for
[logs] slow_consumer_seconds while a line waits for it is ended with RESOURCE_EXHAUSTED (like Watch), so a stalled
reader does not hold its place. Streams, followed or not (a read costs the registry disk and CPU), are bounded
per gateway process and per tenant ([logs] max_followers, followers_per_tenant).
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import time

import grpc

from solo._proto import solo_pb2 as pb
from solo.core.spec import validate_name
from solo.errors import InvalidRequest, Unavailable
from solo.gateway.status import rpc
from solo.gateway.streams import StreamSlots
from solo.security.capabilities import Request

MAX_TAIL = 100_000
MAX_SINCE_SECONDS = 10 * 365 * 86400.0
FOLLOW_WAIT = 15.0  # one long-poll of the registry while following
FOLLOW_RETRIES = 8  # a follow outlives a registry restart: retried with back-off (0.5 s doubling to 5 s, ~30 s)


def check_logs_request(request: pb.LogsRequest) -> None:
    validate_name(request.name)
    since = request.since_seconds
    if not math.isfinite(since) or since < 0 or since > MAX_SINCE_SECONDS:
        raise InvalidRequest(f"since_seconds {since!r} is not an age in seconds: use 0 (everything kept) or a "
                             f"number of seconds up to {MAX_SINCE_SECONDS:.0f} (ten years), e.g. 600 for the last "
                             "10 minutes")
    if request.tail > MAX_TAIL:
        raise InvalidRequest(f"tail {request.tail} is over {MAX_TAIL:,} lines; ask for fewer (0 = every kept line)")


def _line(row) -> pb.LogLine:
    _, when, stream, version, text = row
    return pb.LogLine(time=when, stream=stream, version=version, text=text)


class LogsRpcs:
    """Mixed into GatewayServicer (gateway/servicer.py)."""

    def _log_slots(self) -> StreamSlots:
        """The Logs streams open on this gateway process, per tenant (with the limits in force: a reload)."""
        limits = self.config.logs
        slots = self.__dict__.get("_logs_streams")
        if slots is None:
            slots = self.__dict__["_logs_streams"] = StreamSlots(
                "logs streams", limits.max_followers, limits.followers_per_tenant, "[logs] max_followers",
                "[logs] followers_per_tenant")
        slots.set_limits(limits.max_followers, limits.followers_per_tenant)
        return slots

    def _too_slow(self, context) -> None:
        """End the stream from outside its generator (which waits in a yield the client does not take)."""
        seconds = self.config.logs.slow_consumer_seconds

        async def end() -> None:
            with contextlib.suppress(Exception):  # grpc raises AbortError here once the status is sent
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"the reader did not keep up (no line taken in {seconds:g}s); read again with "
                                    "--tail or --since to resume")
        asyncio.get_running_loop().create_task(end())

    async def _next_page(self, tenant: str, name: str, after: int, since: float, follow: bool) -> dict:
        attempt = 0
        while True:
            try:
                return await self.registry.read_logs(tenant, name, after, since, 0, FOLLOW_WAIT if follow else 0.0)
            except Unavailable:
                attempt += 1
                if not follow or attempt >= FOLLOW_RETRIES:
                    raise
                await asyncio.sleep(min(5.0, 0.25 * 2 ** attempt))

    @rpc(lambda r: Request("logs", r.name))
    async def Logs(self, request, context, principal):
        check_logs_request(request)
        tenant, name, since = principal.tenant, request.name, request.since_seconds
        loop, slow = asyncio.get_running_loop(), self.config.logs.slow_consumer_seconds
        with self._log_slots().slot(tenant):  # every stream, followed or not: a read costs the registry disk and CPU
            page = await self.registry.read_logs(tenant, name, -1, since, request.tail, 0.0)
            while True:
                lines = [_line(row) for row in page["lines"]]
                if page["skipped"]:
                    lines.insert(0, pb.LogLine(time=time.time(), stream="solo", text=f"{page['skipped']} lines were "
                                               "rotated away before they were read (the service writes faster than "
                                               "they were read)"))
                for line in lines:
                    timer = loop.call_later(slow, self._too_slow, context) if hasattr(context, "abort") else None
                    try:
                        yield line
                    finally:
                        if timer is not None:
                            timer.cancel()
                if not page["lines"] and not request.follow:
                    return
                page = await self._next_page(tenant, name, page["last"], since, request.follow)


__all__ = ["LogsRpcs", "check_logs_request"]
