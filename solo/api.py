"""What tenant code imports: the `Service` base class and its context.

A service is a plain Python class in one file. Subclassing `solo.Service` is optional but gives
you the hooks' defaults and `self.context`:

    import solo

    class Counter(solo.Service):
        def __init__(self):
            self.value = 0

        def incr(self, by: int = 1) -> int:      # callable: public method
            self.value += by
            return self.value

        async def slow_get(self) -> int:         # async methods run on the host's event loop
            return self.value

        def count_to(self, n: int):              # generators stream their items
            yield from range(1, n + 1)

        def snapshot(self):                      # state handed to the next version on hot swap
            return {"value": self.value}

        def restore(self, state):
            self.value = state["value"]

Every public method (no leading underscore) that is not a hook is callable. Arguments and results
are JSON values or raw bytes. Sync methods run in a thread, `max_concurrency` at a time
(default 1, like a Ray actor); async methods run concurrently on the host's event loop.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

HOOKS = frozenset({"start", "stop", "health", "snapshot", "restore"})


class Secrets(Mapping[str, str]):
    """The vault secrets the service was deployed with (`solo deploy --secret db/password`), read-only:
    `self.context.secrets["db/password"]` is the value as text (UTF-8), `.raw("db/password")` as bytes.
    Read at each start of the service: a new version (`solo secrets put`) reaches it at its next start."""

    def __init__(self, values: Mapping[str, bytes] | None = None):
        self._values = dict(values or {})

    def __getitem__(self, key: str) -> str:
        return self._values[key].decode()

    def raw(self, key: str) -> bytes:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:  # keys only: a context printed in a log or a traceback shows no value
        return f"Secrets({sorted(self._values)})"


@dataclass(frozen=True)
class Context:
    """Facts about the running service, available as `self.context`."""

    tenant: str = ""
    name: str = ""
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=Secrets, repr=False)


class Service:
    """Optional base class for Solo services. Hooks may be sync or `async def`."""

    context: Context = Context()

    def start(self) -> None:
        """Called once after the constructor, before the service receives any call."""

    def stop(self) -> None:
        """Called when the service is stopped or replaced, after in-flight calls drain."""

    def health(self) -> bool:
        """Return False (or raise) when the service cannot serve; True otherwise."""
        return True

    def snapshot(self) -> Any:
        """Return JSON-compatible state for the next version (hot swap). None = stateless."""
        return None

    def restore(self, state: Any) -> None:
        """Take over the state returned by the previous version's snapshot()."""


_discoverer = None  # installed by the host process that runs the service (solo/runtime/peer.py)


def discover(name: str, owner: str = ""):
    """A handle on another service, called directly (not through the gateway): `kv = solo.discover("kv")`,
    then `kv.call("get", "k")` in sync code or `await kv.acall("get", "k")` in async code. `owner`: another
    tenant that granted you its service. Only inside a service deployed to Solo; call it in `__init__`,
    `start()` or a sync method (in async code: `await solo.adiscover(...)`). A missing service, or one you
    may not see, raises NOT_FOUND."""
    if _discoverer is None:
        raise RuntimeError("solo.discover() works inside a service deployed to Solo; elsewhere use SoloClient")
    return _discoverer(name, owner)


async def adiscover(name: str, owner: str = ""):
    """`discover` for async code."""
    if _discoverer is None:
        raise RuntimeError("solo.adiscover() works inside a service deployed to Solo; elsewhere use SoloClient")
    return await _discoverer.adiscover(name, owner)


def context_from(tenant: str, name: str, version: str, config_json: str, labels: dict[str, str],
                 secrets: Mapping[str, bytes] | None = None) -> Context:
    return Context(tenant=tenant, name=name, version=version,
                   config=json.loads(config_json) if config_json else {}, labels=dict(labels),
                   secrets=Secrets(secrets))
