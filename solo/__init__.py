"""Solo: a multi-tenant service runtime on Ray.

Tenant code imports `Service` (and reads `self.context`, and may `discover` other services); programs use `SoloClient` or
`AsyncSoloClient`; errors are `SoloError` subclasses whichever side raised them.
"""
from solo.api import Context, Service, adiscover, discover
from solo.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    ServiceFailed,
    SoloError,
    Unauthenticated,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists", "AsyncSoloClient", "Context", "DeadlineExceeded", "FailedPrecondition", "InvalidRequest",
    "NotFound", "Overloaded", "PermissionDenied", "Service", "ServiceFailed", "SoloClient", "SoloError",
    "Unauthenticated", "Unavailable", "__version__", "adiscover", "discover",
]


def __getattr__(name: str):
    # The clients pull in grpc; tenant code that only needs `solo.Service` should not pay for it.
    if name in ("SoloClient", "AsyncSoloClient"):
        from solo import client
        return getattr(client, name)
    raise AttributeError(f"module 'solo' has no attribute {name!r}")
