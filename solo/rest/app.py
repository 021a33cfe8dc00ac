"""The REST/JSON gateway's app: one endpoint per row of solo/rest/table.py, each calling the gRPC handler.

An endpoint converts the HTTP request into the RPC's request message, calls the same GatewayServicer
method gRPC calls (through a RestContext), and converts the answer: JSON, a JSON list, or Server-Sent
Events for streams. Errors found before a stream's first message (or within its first second) are an
HTTP status; later ones are an `error` event, and a stream that ends cleanly sends an `end` event.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Callable

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from solo._proto import solo_pb2 as pb
from solo.errors import DeadlineExceeded, Internal, InvalidRequest, Overloaded, SoloError
from solo.rest import messages
from solo.rest.auth import authenticate_first
from solo.rest.context import END, IDLE, RestContext, Stream, unary
from solo.rest.errors import REQUEST_ID, error_body, error_response
from solo.rest.openapi import document
from solo.rest.server import TRANSPORT_EXTENSION
from solo.rest.table import INVOKE, INVOKE_SSE, LIST, LOGS, ROUTES, SSE, UNARY, Route

log = logging.getLogger("solo.rest")

TIMEOUT_HEADER = "solo-timeout"
MAX_TIMEOUT = 86_400.0
FIRST_WAIT = 1.0      # how long a stream's first message is waited for before its headers go out
KEEPALIVE = 15.0      # an idle stream sends a comment this often (proxies close silent connections)
THREAD_PARSE = 256 * 1024  # bodies larger than this are parsed off the event loop
ABORT_GRACE = 1.0     # a stream its handler ended (a slow-consumer timer) has this long to write its last event


class TooLarge(InvalidRequest):
    http_status = 413


def _request_id(request: Request) -> str:
    given = request.headers.get(REQUEST_ID, "")
    if 0 < len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return uuid.uuid4().hex[:16]


def _context(request: Request, request_id: str) -> RestContext:
    metadata = [("x-request-id", request_id)]
    authorization = request.headers.get("authorization")
    if authorization is not None:
        metadata.append(("authorization", authorization))
    client = request.client
    peer = "" if client is None else (f"ipv6:[{client.host}]:{client.port}" if ":" in client.host
                                      else f"ipv4:{client.host}:{client.port}")
    deadline = None
    if TIMEOUT_HEADER in request.headers:
        text = request.headers[TIMEOUT_HEADER]
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= MAX_TIMEOUT:
            raise InvalidRequest(f"Solo-Timeout {text[:32]!r} is not a number of seconds between 0 and "
                                 f"{MAX_TIMEOUT:g}; send e.g. 'Solo-Timeout: 30' or leave it out")
        deadline = time.monotonic() + seconds
    auth = request.scope.get("extensions", {}).get("solo.tls", {})
    return RestContext(tuple(metadata), peer, deadline, auth)


class BodyBudget:
    """The bytes of request bodies held at once, all requests together ([rest] max_body_bytes_in_flight): without
    it the callers with valid tokens could make REST hold max_connections x max_body_bytes (a body is read only
    once its token authenticates, rest/auth.py)."""

    def __init__(self, total: int):
        self.total, self.held = total, 0

    def take(self, size: int, holder: list) -> None:
        if self.held + size > self.total:
            refusal = Overloaded(f"the gateway holds {self.held} bytes of request bodies and may hold "
                                 f"{self.total} ([rest] max_body_bytes_in_flight); retry in a moment")
            refusal.retry_after = 1.0
            raise refusal
        self.held += size
        holder[0] += size

    def give_back(self, holder: list) -> None:
        self.held -= holder[0]
        holder[0] = 0


async def _read_body(request: Request, limit: int, budget: BodyBudget, holder: list) -> bytes:
    """The body, at most `limit` bytes (413 past it), each chunk taken from `budget` (429 past it) for `holder`."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge(f"the request body is {int(length)} bytes, over this gateway's limit of {limit} "
                       "([rest] max_body_bytes)")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the request body is over this gateway's limit of {limit} bytes "
                               "([rest] max_body_bytes)")
            budget.take(len(chunk), holder)
            chunks.append(chunk)
    except ClientDisconnect:  # nobody to answer; not a gateway error
        raise InvalidRequest("the client closed the connection before its request body arrived") from None
    return b"".join(chunks)


def _parse_json(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not UTF-8 text; send JSON") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column "
                             f"{exc.colno}); send a JSON document with Content-Type: application/json") from None
    except RecursionError:
        raise InvalidRequest("the request body's JSON is nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than int() converts (sys.get_int_max_str_digits)
        raise InvalidRequest(f"the request body holds a number Solo does not read ({str(exc)[:80]}); send numbers "
                             "within their field's range") from None


async def _json(body: bytes):
    return await asyncio.to_thread(_parse_json, body) if len(body) > THREAD_PARSE else _parse_json(body)


class RestApp:
    """The endpoints over one GatewayServicer."""

    def __init__(self, servicer, max_body_bytes: int, max_body_bytes_in_flight: int, write_timeout: float):
        self.servicer = servicer
        self.write_timeout = write_timeout
        self.limit = max_body_bytes
        self.budget = BodyBudget(max_body_bytes_in_flight)

    async def _message(self, route: Route, request: Request, context: RestContext, holder: list):
        """The RPC's request message from the path, the query string and the body (read once the caller's token
        authenticates, see rest/auth.py)."""
        data = self._from_url(route, request)
        message_class = getattr(pb, route.method.input_type.name)
        if not route.body:
            return messages.from_dict(data, message_class)
        authenticate_first(self.servicer, route.rpc, messages.from_dict(data, message_class), context)
        body = await _read_body(request, self.limit, self.budget, holder)
        if body.strip():
            value = await _json(body)
            if route.body == "*":
                if not isinstance(value, dict):
                    raise InvalidRequest(f"the request body must be a JSON object (the fields of "
                                         f"{route.method.input_type.name}), not {type(value).__name__}")
                given = sorted(set(value) & set(route.path_params))
                if given:
                    raise InvalidRequest(f"{given[0]} is given by the path; leave it out of the request body")
                data = {**value, **data}
            else:
                data[route.body] = value
        return messages.from_dict(data, message_class)

    @staticmethod
    def _from_url(route: Route, request: Request) -> dict:
        """The request's fields the path, the query string, Last-Event-ID and the route itself give."""
        data: dict = {name: request.path_params[name] for name in route.path_params}
        allowed = {path.rsplit(".", 1)[-1]: path for path in route.query}
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            takes = ", ".join(sorted(allowed)) or "none"
            raise InvalidRequest(f"unknown query parameter {unknown[0][:64]!r}; {route.verb} {route.openapi_path} "
                                 f"takes: {takes}")
        descriptor = route.method.input_type
        for name, path in allowed.items():
            values = request.query_params.getlist(name)
            if values:
                messages.set_path(data, path, messages.query_value(messages.field_at(descriptor, path), values,
                                                                   name))
        if route.rpc == "Watch" and "after_id" not in request.query_params and "last-event-id" in request.headers:
            last = request.headers["last-event-id"]
            if not (last.isascii() and last.isdigit()) or len(last) > 20:
                raise InvalidRequest(f"Last-Event-ID {last[:32]!r} is not an event id (the decimal id of the last "
                                     "event received)")
            messages.set_path(data, "filter.after_id", int(last))
        data.update(dict(route.fixed))
        return data

    async def _invoke_message(self, route: Route, request: Request, context: RestContext,
                              holder: list) -> pb.InvokeRequest:
        allowed = {"owner"}
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise InvalidRequest(f"unknown query parameter {unknown[0][:64]!r}; a call takes: owner (to call a "
                                 "service another tenant granted you)")
        name, owner = request.path_params["name"], request.query_params.get("owner", "")
        message = pb.InvokeRequest(service=f"{owner}/{name}" if owner else name, method=request.path_params["method"])
        authenticate_first(self.servicer, route.rpc, message, context)
        body = await _read_body(request, self.limit, self.budget, holder)
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/octet-stream":
            message.raw = body
        elif body.strip():
            await _json(body)  # a clear 400 here rather than the service's own complaint
            message.json = body.decode("utf-8")
        return message

    def endpoint(self, route: Route) -> Callable:
        async def handle(request: Request) -> Response:
            request_id = _request_id(request)
            holder = [0]  # body bytes this request holds of the budget, until its answer is made
            try:
                context = _context(request, request_id)
                if route.shape in (INVOKE, INVOKE_SSE):
                    message = await self._invoke_message(route, request, context, holder)
                else:
                    message = await self._message(route, request, context, holder)
                response = await self._answer(route, message, context, request_id)
            except SoloError as exc:
                return error_response(exc, request_id, getattr(exc, "http_status", None))
            except Exception:  # noqa: BLE001 - never a traceback to the client
                log.exception("unexpected error in REST %s %s (request %s)", route.verb, route.path, request_id)
                return error_response(Internal(f"internal error in the gateway (request id {request_id}); the "
                                               "operator can find it in the gateway log"), request_id)
            finally:
                self.budget.give_back(holder)
            response.headers[REQUEST_ID] = request_id
            return response
        handle.__name__ = route.operation
        return handle

    async def _answer(self, route: Route, message, context: RestContext, request_id: str) -> Response:
        shape = route.shape
        if shape == LOGS:
            shape = SSE if message.follow else LIST
        if shape == UNARY:
            return JSONResponse(messages.to_dict(await unary(self.servicer, route.rpc, message, context)))
        if shape == INVOKE:
            result = await unary(self.servicer, route.rpc, message, context)
            if result.HasField("raw"):
                return Response(result.raw, media_type="application/octet-stream")
            return Response(result.json, media_type="application/json")
        stream = Stream(self.servicer, route.rpc, message, context)
        if shape == LIST:
            items = []
            try:
                while (item := await stream.next()) is not END:
                    items.append(messages.to_dict(item))
            finally:
                stream.close()
            error = stream.error()
            if error is not None:
                raise error
            return JSONResponse({route.items: items})
        first = await stream.next(FIRST_WAIT)
        if first is END and stream.error() is not None:
            raise stream.error()
        return EventStream(_events(stream, first, context, request_id, _ENCODERS[route.rpc]), self.write_timeout,
                           stream)


class EventStream(StreamingResponse):
    """Server-Sent Events whose every write waits at most `write_timeout` seconds ([rest] write_timeout_seconds)
    for the client to read. Past it the connection is aborted (what is unsent is dropped: a close would wait for
    the client to read it) and the stream's handler cancelled, so a reader that stopped reading holds neither a
    connection ([rest] max_connections) nor the handler's slots, whether the handler ended it (a slow-consumer
    timer: then its pending write gets ABORT_GRACE, not the whole timeout) or is blocked handing it the next
    message (a streamed call)."""

    def __init__(self, content, write_timeout: float, stream: Stream):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.write_timeout, self.stream = write_timeout, stream

    async def __call__(self, scope, receive, send) -> None:
        transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)

        async def bounded(message) -> None:
            sending = asyncio.ensure_future(send(message))
            aborted = asyncio.ensure_future(self.stream.aborted.wait())
            try:
                await asyncio.wait({sending, aborted}, timeout=self.write_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not sending.done() and aborted.done():  # the handler gave up on this reader: a moment more
                    await asyncio.wait({sending}, timeout=ABORT_GRACE)
            except BaseException:
                sending.cancel()
                raise
            finally:
                aborted.cancel()
            if sending.done():
                sending.result()
                return
            sending.cancel()
            log.info("REST stream %s: the client stopped reading (%s); its connection is dropped", self.stream.rpc,
                     "the handler ended it" if self.stream.aborted.is_set() else
                     f"nothing read for {self.write_timeout:g}s, [rest] write_timeout_seconds")
            self.stream.close()
            if transport is not None:
                transport.abort()  # the server sees the disconnect and ends this response
            raise StalledReader()

        try:
            await super().__call__(scope, receive, bounded)
        except StalledReader:
            try:  # the abort's disconnect reaches the server on the loop's next turns: end after it
                await asyncio.wait_for(_disconnected(receive), 1.0)
            except TimeoutError:
                pass
        finally:
            self.stream.close()


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class StalledReader(Exception):
    """A stream's client read nothing for [rest] write_timeout_seconds."""


def sse(data: str, event: str = "", event_id: str = "") -> bytes:
    lines = ([f"event: {event}"] if event else []) + ([f"id: {event_id}"] if event_id else [])
    lines += [f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def _dumps(message) -> str:
    return json.dumps(messages.to_dict(message), separators=(",", ":"))


def _invoke_item(item: pb.InvokeResponse) -> bytes:
    if item.HasField("raw"):
        return sse(base64.b64encode(item.raw).decode("ascii"), event="raw")
    return sse(item.json)


_ENCODERS = {
    "InvokeStream": _invoke_item,
    "Watch": lambda event: sse(_dumps(event), event_id=str(event.id)),
    "Logs": lambda line: sse(_dumps(line)),
}


async def _events(stream: Stream, item, context: RestContext, request_id: str, encode):
    """The stream as Server-Sent Events: `message` per item (Watch: with the event id as its SSE id), comments
    while idle, then `end`, or `error` with the same body an HTTP error would have."""
    try:
        while True:
            if item is END:
                error = stream.error()
                yield sse(json.dumps(error_body(error, request_id)), "error") if error else sse("{}", "end")
                return
            if item is IDLE:
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:
                    error = DeadlineExceeded("the stream did not finish within the Solo-Timeout the request gave")
                    yield sse(json.dumps(error_body(error, request_id)), "error")
                    return
                yield b": idle\n\n"
            else:
                yield encode(item)
            remaining = context.time_remaining()
            item = await stream.next(KEEPALIVE if remaining is None else min(KEEPALIVE, remaining + 0.5))
    finally:
        stream.close()


def build_app(servicer, max_body_bytes: int = 16 << 20, health=None,
              max_body_bytes_in_flight: int = 256 << 20, write_timeout: float = 30.0) -> FastAPI:
    """The FastAPI app: every route of the table, /openapi.json, and /health and /ready answered by `health` (a
    gateway.health.Health: the same answers as the metrics port's). No /docs page: Swagger UI would load its
    script from a CDN into a page where a token is pasted."""
    app = FastAPI(title="Solo REST API", openapi_url=None, docs_url=None, redoc_url=None)
    rest = RestApp(servicer, max_body_bytes, max_body_bytes_in_flight, write_timeout)
    for route in ROUTES:
        app.router.add_route(route.path, rest.endpoint(route), methods=[route.verb], name=route.operation,
                             include_in_schema=False)
    spec = document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    async def probe(request: Request) -> Response:
        if health is None:  # a gateway without health state (tests' bare servicers): it answers, so it is up
            return JSONResponse({"status": "up"})
        status, body = health.answer(request.url.path)
        return JSONResponse(body, status, headers={"Cache-Control": "no-store"})

    app.router.add_route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)
    app.router.add_route("/health", probe, methods=["GET"], include_in_schema=False)
    app.router.add_route("/ready", probe, methods=["GET"], include_in_schema=False)

    async def not_routed(request: Request, exc: HTTPException) -> Response:
        request_id = _request_id(request)
        if exc.status_code == 405:
            error = InvalidRequest(f"{request.method} is not allowed on {request.url.path}; see /openapi.json")
        else:
            error = SoloError(f"no route {request.method} {request.url.path}; the routes are in /openapi.json")
            error.code = "NOT_FOUND"
        return error_response(error, request_id, exc.status_code)

    app.add_exception_handler(HTTPException, not_routed)
    return app
