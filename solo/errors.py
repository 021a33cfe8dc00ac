"""Solo's domain errors: one hierarchy, one transport-neutral code each.

The gateway maps `code` to a gRPC status in one table (solo/gateway/status.py); the client maps
statuses back to these classes, so callers catch `solo.NotFound` whichever side raised it.
Every message says what was wrong and what to do about it.
"""
from __future__ import annotations


class SoloError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str, *, exception_type: str = ""):
        super().__init__(message)
        self.message = message
        self.exception_type = exception_type

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # keep exception_type across pickling (Ray ships errors between processes)
        return (from_code, (self.code, self.message, self.exception_type))


class InvalidRequest(SoloError):
    code = "INVALID_ARGUMENT"


class Unauthenticated(SoloError):
    code = "UNAUTHENTICATED"


class PermissionDenied(SoloError):
    code = "PERMISSION_DENIED"


class NotFound(SoloError):
    code = "NOT_FOUND"


class AlreadyExists(SoloError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(SoloError):
    """The request is valid but the system cannot act on it as things are (e.g. unschedulable)."""

    code = "FAILED_PRECONDITION"


class Overloaded(SoloError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(SoloError):
    code = "UNAVAILABLE"


class DeadlineExceeded(SoloError):
    code = "DEADLINE_EXCEEDED"


class ServiceFailed(SoloError):
    """Tenant code raised: the message is the tenant's exception type and text, nothing else."""

    code = "SERVICE_FAILED"


class Internal(SoloError):
    code = "INTERNAL"


ERRORS_BY_CODE: dict[str, type[SoloError]] = {
    cls.code: cls
    for cls in (SoloError, InvalidRequest, Unauthenticated, PermissionDenied, NotFound, AlreadyExists,
                FailedPrecondition, Overloaded, Unavailable, DeadlineExceeded, ServiceFailed, Internal)
}


# codes an answer of a service's code may carry (calls, and its cell's control answers); anything else
# (INTERNAL, UNKNOWN, UNAUTHENTICATED, PERMISSION_DENIED...) is the service's failure, not Solo's
SERVICE_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION",
                           "RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "SERVICE_FAILED"})


def service_error(code: str, message: str, exception_type: str = "") -> SoloError:
    """The error a service's code answered, as Solo passes it on: a code it may not give is SERVICE_FAILED."""
    if code not in SERVICE_CODES:
        return ServiceFailed(f"the service answered with an error Solo does not pass on ({code[:40]!r}): {message}",
                             exception_type=exception_type)
    return from_code(code, message, exception_type)


MOVED = "Moved"  # exception_type of UNAVAILABLE from a host frozen for a hot swap: the call did not run


def from_code(code: str, message: str, exception_type: str = "") -> SoloError:
    return ERRORS_BY_CODE.get(code, SoloError)(message, exception_type=exception_type)
