"""Solo's control capability: the registry and event-log actors answer only callers holding it.

Any process that can reach Ray can look a named actor up and call it. The registry (deploy, stop,
every route with its host key) and the event log (append, read) must answer only Solo's own
components: the supervisor, its gateway and the registry itself. They hold a random secret,
`<data-dir>/control.secret` (0600), created by the supervisor and handed to the two actors in their
constructors (Ray re-runs a restarted actor's constructor with the same arguments). Every call
carries it as its first argument. Service hosts never receive it.

`gated(cls)` is what Solo hands to `ray.remote` instead of the actor class itself: a class whose
only methods are `cls`'s public ones, each checking the secret first. The actor's own helpers
(`_commit`, `_ticket`, ...) are not methods of the Ray actor, so they cannot be called through Ray
either (Ray would otherwise run any method of the class by name, private ones included).
"""
from __future__ import annotations

import hmac
import inspect
import re
import secrets
from pathlib import Path

from solo.errors import PermissionDenied
from solo.files import write_atomic

CONTROL_SECRET_FILE = "control.secret"
_SHAPE = re.compile(r"[0-9a-f]{64}")


def load_or_create(data_dir: Path) -> str:
    """The data directory's control secret; a new one (0600) when there is none or it is unreadable."""
    path = Path(data_dir) / CONTROL_SECRET_FILE
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        text = ""
    if not _SHAPE.fullmatch(text):
        text = secrets.token_hex(32)
        write_atomic(path, text + "\n", 0o600)
    return text


def require(expected: str, presented: object, what: str) -> None:
    """Raise PermissionDenied unless `presented` is the control secret (compared in constant time)."""
    if not (isinstance(presented, str) and hmac.compare_digest(presented.encode(), expected.encode())):
        raise PermissionDenied(f"only Solo's own components may call the {what}: this call did not carry Solo's "
                               f"control secret; use the gateway instead (the solo CLI, SoloClient)")


def gated(cls: type, what: str, open_methods: frozenset[str] = frozenset()) -> type:
    """A class for `ray.remote` that builds `cls(*args, **kwargs)` (with `control_secret=` too when
    `cls` takes it) from `Gate(control_secret, *args, **kwargs)`, and exposes only `cls`'s public
    methods: each takes the secret as its first argument, except those in `open_methods`."""
    wants_secret = "control_secret" in inspect.signature(cls).parameters

    def __init__(self, control_secret: str, *args, **kwargs):
        if not (isinstance(control_secret, str) and _SHAPE.fullmatch(control_secret)):
            raise ValueError(f"the {what} needs Solo's control secret (64 hex characters)")
        self._control = control_secret
        self._inner = cls(*args, control_secret=control_secret, **kwargs) if wants_secret else cls(*args, **kwargs)

    body = {"__init__": __init__, "__module__": __name__, "__doc__": f"{cls.__name__}, callable only with the "
            "control secret (see solo.security.control)."}
    for name, function in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            body[name] = _forward(name, function, what, checked=name not in open_methods)
    return type(cls.__name__, (), body)


def _forward(name: str, function, what: str, checked: bool):
    """The gate's method `name`: check the secret (when `checked`), then call the inner object's."""
    if inspect.iscoroutinefunction(function):
        if checked:
            async def method(self, control=None, *args, **kwargs):
                require(self._control, control, what)
                return await getattr(self._inner, name)(*args, **kwargs)
        else:
            async def method(self, *args, **kwargs):
                return await getattr(self._inner, name)(*args, **kwargs)
    elif checked:
        def method(self, control=None, *args, **kwargs):
            require(self._control, control, what)
            return getattr(self._inner, name)(*args, **kwargs)
    else:
        def method(self, *args, **kwargs):
            return getattr(self._inner, name)(*args, **kwargs)
    # not functools.wraps: Ray checks calls against the signature, and `control` defaults to None so that a
    # call without it reaches the check (PermissionDenied) instead of failing in the caller
    method.__name__ = method.__qualname__ = name
    method.__doc__ = function.__doc__
    return method


__all__ = ["CONTROL_SECRET_FILE", "gated", "load_or_create", "require"]
