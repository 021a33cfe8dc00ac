"""The one table from Solo error codes to gRPC status codes, and the wrapper that applies it.

Every RPC handler is wrapped by `rpc`: it authenticates and authorises the caller for what the
request wants (one Authenticator), gives the handler the Principal, and turns SoloError into the mapped status with the error's message.
Anything unexpected becomes INTERNAL with a request id and never leaks platform internals.
A request whose bytes do not parse (see `lenient_deserializer`) is answered INVALID_ARGUMENT at once.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
import uuid
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError

from solo.errors import Internal, InvalidRequest, Overloaded, PermissionDenied, SoloError, Unauthenticated
from solo.security.capabilities import Request

log = logging.getLogger("solo.gateway")

STATUS_BY_CODE: dict[str, grpc.StatusCode] = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "SERVICE_FAILED": grpc.StatusCode.UNKNOWN,   # the tenant's code raised: type and message only
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "UNKNOWN": grpc.StatusCode.UNKNOWN,
}
ERROR_HEADER = "solo-error"
RETRY_AFTER_HEADER = "retry-after-ms"
EXCEPTION_HEADER = "solo-exception-type"
REQUEST_ID_HEADER = "x-request-id"


def request_id(metadata) -> str:
    for key, value in metadata:
        if key == REQUEST_ID_HEADER and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex[:16]


class Undecodable:
    """What a handler gets instead of its request when the request's bytes are not a valid message."""

    __slots__ = ("message_name", "reason")

    def __init__(self, message_name: str, reason: str):
        self.message_name, self.reason = message_name, reason

    def error(self) -> InvalidRequest:
        return InvalidRequest(f"the request is not a valid {self.message_name}: {self.reason}; send the serialized "
                              f"{self.message_name} of the solo.v1 protocol (proto/solo/v1/solo.proto)")


def lenient_deserializer(message_class) -> Callable[[bytes], object]:
    """`message_class.FromString` that returns an Undecodable instead of raising, so corrupt bytes are answered
    INVALID_ARGUMENT by `rpc` (grpc itself would answer UNKNOWN "Unexpected DecodeError")."""
    name = message_class.DESCRIPTOR.name

    def deserialize(data: bytes):
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            reason = str(exc).rsplit(": ", 1)[-1] if ": " in str(exc) else str(exc)
            return Undecodable(name, (reason or "corrupt wire format")[:200])
        except Exception as exc:  # noqa: BLE001 - whatever the parser raises, the bytes are the caller's
            return Undecodable(name, type(exc).__name__)
    return deserialize


MAX_DETAILS_BYTES = 4096  # on the wire; clients refuse a response whose metadata passes 8 KiB


def _wire_size(text: str) -> int:
    """Bytes of `text` as grpc-message: printable ASCII but '%' as is, every other UTF-8 byte as %XX."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode("utf-8", "replace"))


def bounded_details(message: str) -> str:
    """The message, cut (with a note) so that the status details stay within MAX_DETAILS_BYTES on the wire.

    Messages quote what the caller sent; a caller that sent megabytes must not get a response its own
    client refuses (RESOURCE_EXHAUSTED "received metadata size exceeds ...") instead of the error."""
    if len(message) <= MAX_DETAILS_BYTES // 3 or _wire_size(message) <= MAX_DETAILS_BYTES:
        return message
    note = " ... (message cut)"
    budget, keep = MAX_DETAILS_BYTES - len(note), 0
    for char in message:
        budget -= _wire_size(char)
        if budget < 0:
            break
        keep += 1
    return message[:keep] + note


def trailer_text(text: str, cap: int = 200) -> str:
    """`text` as a metadata value: printable ASCII only (a service's exception class may be named `Café`,
    or anything with type(); grpc refuses other bytes and the client would get INTERNAL, trailers lost)."""
    escaped = text[:cap].encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else "?" for c in escaped)[:cap]


def answer_with(context: grpc.aio.ServicerContext, exc: SoloError) -> None:
    """Make the call end with this error (status, message, trailers) once the handler returns.

    Not `context.abort`: it raises through grpc's frames and leaves reference cycles (traceback <->
    frame) for the garbage collector on every refused call, and under overload most calls are refused."""
    trailers = [(ERROR_HEADER, exc.code)]
    if exc.exception_type:
        trailers.append((EXCEPTION_HEADER, trailer_text(exc.exception_type)))
    if getattr(exc, "retry_after", None) is not None:
        trailers.append((RETRY_AFTER_HEADER, str(max(1, round(exc.retry_after * 1000)))))
    context.set_code(STATUS_BY_CODE.get(exc.code, grpc.StatusCode.UNKNOWN))
    context.set_details(bounded_details(exc.message))
    context.set_trailing_metadata(tuple(trailers))


def peer_host(context) -> str:
    """The caller's address without its port ("ipv4:1.2.3.4:5678" -> "1.2.3.4"; "" when unknown)."""
    try:
        peer = context.peer() or ""
    except Exception:  # noqa: BLE001 - a context without a peer (tests' fakes, closed calls)
        return ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:rest.find("]")]
    return rest.rpartition(":")[0] if kind == "ipv4" else rest[:200]


def rpc(need: Callable[[object], Request]):
    """Wrap a servicer method `(self, request, context, principal)` (unary or server streaming).

    `need(request)` says what the call wants (operation, service, method): the token must allow
    exactly that. Refusals are counted by `self.audit` (aggregated into events, never per call).
    """

    def decorate(handler):
        def _unexpected(exc: BaseException, metadata) -> SoloError:
            rid = request_id(metadata)
            log.exception("unexpected error in %s (request %s)", handler.__name__, rid)
            return Internal(f"internal error in the gateway (request id {rid}); the operator can find it in "
                            "the gateway log")

        def _authenticate(self, wanted: Request, context, metadata):
            source = peer_host(context)
            wait = self.auth_failures.exhausted(source)
            if wait and not self.authenticator.known_good(metadata, wanted):
                refusal = Overloaded(f"too many refused authentications from {source}; retry in "
                                     f"{math.ceil(wait * 1000)} ms with a valid token")
                refusal.retry_after = wait
                raise refusal
            try:
                principal = self.authenticator.authenticate(metadata, wanted, context)
            except (Unauthenticated, PermissionDenied) as exc:
                if isinstance(exc, Unauthenticated):
                    self.auth_failures.refused(source)
                self.audit.denied(exc, wanted)
                raise
            try:
                self.limiter.take(principal.tenant, principal.revocation_ids[0] if principal.revocation_ids else "")
            except Overloaded as exc:
                exc.tenant = principal.tenant
                self.audit.denied(exc, wanted)
                raise
            return principal

        if inspect.isasyncgenfunction(handler):
            @functools.wraps(handler)
            async def stream_wrapper(self, request, context):
                if isinstance(request, Undecodable):
                    answer_with(context, request.error())
                    return
                metadata = context.invocation_metadata() or ()
                try:
                    wanted = need(request)
                    principal = _authenticate(self, wanted, context, metadata)
                    async for item in handler(self, request, context, principal):
                        # a token revoked or expired while its stream is open ends the stream (cached: cheap)
                        self.authenticator.authenticate(metadata, wanted, context)
                        yield item
                except SoloError as exc:
                    answer_with(context, exc)
                except Exception as exc:  # noqa: BLE001
                    answer_with(context, _unexpected(exc, metadata))
            return stream_wrapper

        @functools.wraps(handler)
        async def unary_wrapper(self, request, context):
            if isinstance(request, Undecodable):  # answered before authentication: no work is done for it
                answer_with(context, request.error())
                return None
            metadata = context.invocation_metadata() or ()
            try:
                principal = _authenticate(self, need(request), context, metadata)
                return await handler(self, request, context, principal)
            except SoloError as exc:
                answer_with(context, exc)
            except Exception as exc:  # noqa: BLE001
                answer_with(context, _unexpected(exc, metadata))
        return unary_wrapper

    return decorate
