"""What a GatewayServicer handler sees of an HTTP request: a stand-in for grpc's ServicerContext.

The REST gateway calls the same handler methods as gRPC (gateway/servicer.py and its mixins), so
authentication, the auth-failure budget, rate limits, admission, metrics, events and validation are
gRPC's own. This adapter gives them the bearer token and request id as metadata, the HTTP client's
address as the peer, the deadline from `Solo-Timeout`, the client certificate's names (mutual TLS),
and captures the status the handler sets (gateway/status.answer_with) as a SoloError.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator

import grpc

from solo.errors import ERRORS_BY_CODE, Internal, SoloError
from solo.gateway.status import ERROR_HEADER, EXCEPTION_HEADER, RETRY_AFTER_HEADER

log = logging.getLogger("solo.rest")


class NotServed(SoloError):
    """An RPC this gateway has no handler for (grpc's UNIMPLEMENTED)."""

    code = "UNIMPLEMENTED"


class RestContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...], peer: str, deadline: float | None = None,
                 auth: dict | None = None):
        self._metadata = metadata
        self._peer = peer
        self.deadline = deadline  # time.monotonic() instant, None = no deadline
        self._auth = auth or {}
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: tuple = ()
        self.queue: asyncio.Queue | None = None  # set by Stream: where context.write puts messages
        self.on_abort = None  # set by Stream: an abort from outside the handler (a stalled reader) ends the stream

    # --- what handlers call ---
    def invocation_metadata(self):
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict:
        return self._auth

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def set_code(self, code) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details or ""

    def set_trailing_metadata(self, trailers) -> None:
        self.trailers = tuple(trailers or ())

    def cancelled(self) -> bool:
        return False

    async def write(self, message) -> None:
        if self.queue is None:
            raise RuntimeError("write() on a unary call")
        await self.queue.put(message)

    async def abort(self, code, details: str = "", trailing_metadata=()) -> None:
        self.set_code(code)
        self.set_details(details)
        self.set_trailing_metadata(trailing_metadata)
        if self.on_abort is not None:
            self.on_abort()
        raise _Aborted()

    # --- what the REST gateway reads back ---
    def error(self) -> SoloError | None:
        """The status the handler set, as the SoloError it came from (None: it succeeded)."""
        if self.code is None or self.code == grpc.StatusCode.OK:
            return None
        trailers = dict(self.trailers)
        code = trailers.get(ERROR_HEADER) or ("UNIMPLEMENTED" if self.code == grpc.StatusCode.UNIMPLEMENTED
                                              else getattr(self.code, "name", "UNKNOWN"))
        cls = NotServed if code == "UNIMPLEMENTED" else ERRORS_BY_CODE.get(code, SoloError)
        exc = cls(self.details or code, exception_type=trailers.get(EXCEPTION_HEADER, ""))
        if cls is SoloError:
            exc.code = code
        if RETRY_AFTER_HEADER in trailers:
            try:
                exc.retry_after = int(trailers[RETRY_AFTER_HEADER]) / 1000
            except ValueError:
                pass
        return exc


class _Aborted(Exception):
    pass


def _not_served(rpc: str) -> NotServed:
    return NotServed(f"{rpc} is not served by this gateway (its handler is not built in this version)")


async def unary(servicer, rpc: str, request, context: RestContext):
    """Call the handler; its response message, or the SoloError it answered with raised."""
    try:
        result = getattr(servicer, rpc)(request, context)
        if inspect.isawaitable(result):
            remaining = context.time_remaining()
            result = await (asyncio.wait_for(result, remaining + GRACE) if remaining is not None else result)
    except NotImplementedError:
        raise _not_served(rpc) from None
    except _Aborted:
        pass
    except TimeoutError:
        raise ERRORS_BY_CODE["DEADLINE_EXCEEDED"](f"{rpc} did not finish within the Solo-Timeout the request "
                                                  "gave; send a longer one") from None
    error = context.error()
    if error is not None:
        raise error
    return result


GRACE = 0.5  # past the deadline, so the handler's own DEADLINE_EXCEEDED (with its message) comes first
END = object()
IDLE = object()


class Stream:
    """A server-streaming handler run as a task: what it yields and what it writes through the context come
    out of next(), one at a time (the handler waits while the client has not taken the last one)."""

    def __init__(self, servicer, rpc: str, request, context: RestContext):
        self.rpc, self.context = rpc, context
        context.queue = asyncio.Queue(maxsize=1)
        self.task = asyncio.create_task(self._pump(servicer, request))
        self.aborted = asyncio.Event()  # the handler gave up on the stream (e.g. its reader is too slow)
        context.on_abort = self._abort

    def _abort(self) -> None:
        self.aborted.set()
        self.task.cancel()

    async def _pump(self, servicer, request) -> None:
        try:
            items = getattr(servicer, self.rpc)(request, self.context)
        except NotImplementedError:
            raise _not_served(self.rpc) from None
        try:
            if inspect.isawaitable(items):  # a handler that writes through the context (Watch) and returns None
                await items
            elif isinstance(items, AsyncIterator):
                async for item in items:
                    await self.context.queue.put(item)
            else:
                raise _not_served(self.rpc)
        except _Aborted:
            pass
        except NotImplementedError:
            raise _not_served(self.rpc) from None

    async def next(self, timeout: float | None = None):
        """The next message; END when the handler finished (then see error()); IDLE after `timeout`."""
        queue = self.context.queue
        if not queue.empty():
            return queue.get_nowait()
        if self.task.done():
            return END
        getter = asyncio.ensure_future(queue.get())
        try:
            done, _ = await asyncio.wait({getter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if not queue.empty():
            return queue.get_nowait()
        return END if self.task.done() else IDLE

    def error(self) -> SoloError | None:
        """Why the stream ended, once next() returned END (None: it ended normally)."""
        if self.task.cancelled():
            return self.context.error()  # aborted (or closed: then nobody asks)
        exc = self.task.exception()
        if isinstance(exc, SoloError):
            return exc
        if exc is not None:
            log.error("unexpected error streaming %s", self.rpc, exc_info=exc)
            return Internal(f"internal error in the gateway while streaming {self.rpc}; the operator can find it "
                            "in the gateway log")
        return self.context.error()

    def close(self) -> None:
        self.task.cancel()
