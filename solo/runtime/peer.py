"""`solo.discover` inside a service: handles that call another service's host directly.

The service runs in a cell with no network and no Ray, so its host does the finding and the
connecting: the cell asks its host (control wire, `discover`), the host asks the registry as the
service it runs (proved by the ticket the registry gave it at load), and the registry answers
with the target's address and a peer ticket (an HMAC under the target host's key, naming the
calling tenant, valid 30 s) only if the target is the caller's tenant's, or its owner granted it
to that tenant. The host connects, runs the handshake with the ticket, and hands the connected
socket to the cell, which speaks the same framed call channel the gateways use
(core/dispatch.py HostLink) on it; neither the ticket nor the address reaches tenant code. The
handle asks again every RESOLVE_TTL seconds and moves to each new connection, so a revoked grant
ends direct calls within 30 s. A call answered MOVED (the target froze for a hot swap) or a
closed connection makes it ask again, so it follows swaps and restarts. Calls in flight per
handle are bounded by the target's concurrency plus the service queue limit (the same bound the
gateway applies); past it a call is refused with RESOURCE_EXHAUSTED at once.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from solo.core.dispatch import HostLink
from solo.core.payload import decode_result, encode_args
from solo.core.routes import Route
from solo.errors import MOVED, Overloaded, Unavailable

RESOLVE_TTL = 5.0
RETRY_WINDOW = 5.0  # how long a call keeps re-resolving a target that is being swapped or restarted


class PeerHandle:
    """A discovered service. `call(...)` from sync methods, `await acall(...)` from async ones."""

    def __init__(self, owner: str, name: str, resolve: Callable[[str, str], Awaitable[dict]],
                 loop: asyncio.AbstractEventLoop, loop_thread: int):
        self.owner, self.name = owner, name
        self._resolve, self._loop, self._loop_thread = resolve, loop, loop_thread
        self._target: dict | None = None
        self._resolved_at = 0.0
        self._link: HostLink | None = None
        self._ticket = ""
        self.in_flight = 0

    def __repr__(self) -> str:
        return f"<solo service {self.owner + '/' if self.owner else ''}{self.name}>"

    def call(self, method: str, *args: Any, _timeout: float | None = None, **kwargs: Any) -> Any:
        """Call `method` and wait for its result (from a sync method: it runs in a worker thread)."""
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("call() blocks; in an async method use `await handle.acall(...)`")
        future = asyncio.run_coroutine_threadsafe(self.acall(method, *args, _timeout=_timeout, **kwargs), self._loop)
        return future.result()

    async def acall(self, method: str, *args: Any, _timeout: float | None = None, **kwargs: Any) -> Any:
        json_text, raw = encode_args(*args, **kwargs)
        target = await self._current()
        limit = target["concurrency"] + target["queue"]
        if self.in_flight >= limit:
            error = Overloaded(f"{self.name!r} has {self.in_flight} calls in flight from this service, its limit "
                               f"({target['concurrency']} at a time plus a queue of {target['queue']}); retry later")
            error.retry_after = 0.05
            raise error
        self.in_flight += 1
        try:
            give_up = time.monotonic() + RETRY_WINDOW
            pause = 0.01
            while True:
                link = self._link_for(target)
                try:
                    result = await link.call(method, json_text, raw, _timeout)
                    break
                except Unavailable as exc:
                    # re-sent only when it surely did not run: MOVED (the target froze for a swap, or the
                    # ticket expired), or a connection that never opened (the target moved or restarted)
                    unsent = link.closed and not link.connected
                    if link.closed:
                        self._target = None  # ask the registry again for the next call
                    if not (exc.exception_type == MOVED or unsent) or time.monotonic() >= give_up:
                        raise
                    await asyncio.sleep(pause)
                    pause = min(0.2, pause * 2)  # back off, so many handles do not flood the registry
                    target = await self._current(refresh=True)
        finally:
            self.in_flight -= 1
        return decode_result(result.json if result.HasField("json") else None,
                             result.raw if result.HasField("raw") else None)

    async def _current(self, refresh: bool = False) -> dict:
        if refresh or self._target is None or time.monotonic() - self._resolved_at > RESOLVE_TTL:
            self._target = await self._resolve(self.owner, self.name)
            self._resolved_at = time.monotonic()
        return self._target

    def _link_for(self, target: dict) -> HostLink:
        """The connection for the current answer; a new ticket (every RESOLVE_TTL) means a new connection,
        and the old one closes once its calls are answered, long before its ticket expires."""
        link = self._link
        if link is None or link.closed or self._ticket != target["ticket"]:
            if link is not None and not link.closed:
                link.retire()
            route = Route(self.owner, self.name, target["version"], "RUNNING", "", "", concurrency=target["concurrency"])
            link = self._link = HostLink(route, sock=target.pop("sock", None))
            self._ticket = target["ticket"]
        return link


class Discoverer:
    """What the cell installs as `solo.discover`: asks its host, which resolves through the registry as
    this service and hands back a connected socket (or the registry's error)."""

    def __init__(self, cell, tenant: str):
        self.cell, self.tenant = cell, tenant
        self.loop = asyncio.get_running_loop()  # created in the cell's load, on its event loop
        self.loop_thread = threading.get_ident()

    async def resolve(self, owner: str, target: str) -> dict:
        header, sock = await self.cell.socket_for("discover", owner=owner, target=target)
        return {"sock": sock, "ticket": str(header["ref"]), "version": header["version"],
                "concurrency": header["concurrency"], "queue": header["queue"]}

    def _handle(self, name: str, owner: str) -> PeerHandle:
        return PeerHandle(owner if owner and owner != self.tenant else "", name, self.resolve, self.loop,
                          self.loop_thread)

    def __call__(self, name: str, owner: str = "") -> PeerHandle:
        if threading.get_ident() == self.loop_thread:
            raise RuntimeError("solo.discover() blocks; in async code use `await solo.adiscover(...)`")
        handle = self._handle(name, owner)
        asyncio.run_coroutine_threadsafe(handle._current(), self.loop).result()  # fail here if missing or forbidden
        return handle

    async def adiscover(self, name: str, owner: str = "") -> PeerHandle:
        handle = self._handle(name, owner)
        await handle._current()
        return handle
