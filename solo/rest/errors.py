"""Solo's error codes as HTTP statuses: the one table of the REST gateway (gRPC's is gateway/status.py).

Every error answer is `{"code", "message", "request_id"}` with the same code and message a gRPC client
gets, and the headers a client acts on: Retry-After (whole seconds) and Retry-After-Ms on 429,
WWW-Authenticate on 401, Solo-Exception-Type when the service's code raised.
"""
from __future__ import annotations

import json
import math

from starlette.responses import Response

from solo.errors import SoloError
from solo.gateway.status import bounded_details, trailer_text

HTTP_STATUS_BY_CODE: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,  # valid, but not possible as things are (412 is for If-Match headers)
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "SERVICE_FAILED": 502,       # the tenant's code raised: the gateway worked, what it called did not
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNIMPLEMENTED": 501,
}
REQUEST_ID = "X-Request-Id"


def error_body(exc: SoloError, request_id: str) -> dict:
    return {"code": exc.code, "message": bounded_details(exc.message), "request_id": request_id}


def error_headers(exc: SoloError, request_id: str) -> dict[str, str]:
    headers = {REQUEST_ID: request_id, "Solo-Error": exc.code}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        headers["Retry-After-Ms"] = str(max(1, round(retry_after * 1000)))
    if exc.code == "UNAUTHENTICATED":
        headers["WWW-Authenticate"] = 'Bearer realm="solo"'
    if exc.exception_type:
        headers["Solo-Exception-Type"] = trailer_text(exc.exception_type)
    return headers


def error_response(exc: SoloError, request_id: str, status: int | None = None) -> Response:
    return Response(json.dumps(error_body(exc, request_id)), status or HTTP_STATUS_BY_CODE.get(exc.code, 500),
                    error_headers(exc, request_id), media_type="application/json")
