"""Circuit breakers at the gateway, one per service version: closed, open, half-open.

Closed: calls pass; `failures` infrastructure failures in a row (the host unreachable or gone,
timeouts, internal errors; not errors the service's own code raises) open it. Open: calls fail
at once with UNAVAILABLE for `open_seconds`. Half-open: one probe call passes; its success closes
the breaker, its failure opens it again. A new version starts closed. Pure: a clock in,
decisions and state changes out.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from solo.errors import Unavailable

FAILURE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"})


@dataclass
class _Breaker:
    state: str = "closed"  # closed, open, half_open
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    last_error: str = ""


@dataclass
class Breakers:
    failures: int = 5
    open_seconds: float = 5.0
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[tuple, str, str], None] | None = None  # (key, new state, reason)
    _breakers: dict[tuple, _Breaker] = field(default_factory=dict)

    def before(self, key: tuple) -> bool:
        """May this call go through? Raises Unavailable while open. True when it is the half-open probe."""
        b = self._breakers.get(key)
        if b is None or b.state == "closed":
            return False
        now = self.clock()
        if b.state == "open" and now - b.opened_at >= self.open_seconds:
            self._set(key, b, "half_open", "probing with one call")
        if b.state == "half_open" and not b.probing:
            b.probing = True
            return True
        wait = max(0.0, self.open_seconds - (now - b.opened_at))
        error = Unavailable(f"service {key[1]!r} version {key[2]} is failing ({b.failures} failures in a row, last: "
                            f"{b.last_error}); its circuit breaker is open, calls fail fast for "
                            f"{wait:.1f} s more, then one probe call tests it")
        error.retry_after = wait or 0.1
        raise error

    def record(self, key: tuple, failed: bool, error: str = "") -> None:
        b = self._breakers.get(key)
        if b is None:
            if not failed:
                return
            b = self._breakers[key] = _Breaker()
        if not failed:
            if b.state != "closed":
                self._set(key, b, "closed", "a probe call succeeded")
            b.failures, b.probing = 0, False
            return
        b.failures += 1
        b.last_error = error[:200]
        if b.state == "half_open" or (b.state == "closed" and b.failures >= self.failures):
            b.opened_at, b.probing = self.clock(), False
            self._set(key, b, "open", f"{b.failures} failures in a row, last: {b.last_error}")

    def state(self, key: tuple) -> str:
        b = self._breakers.get(key)
        return b.state if b else "closed"

    def not_closed(self) -> list[tuple]:
        """Keys of the breakers open or half-open now (read by the metrics' scrape thread: a change meanwhile
        gives an empty answer for that scrape rather than an error)."""
        try:
            return [key for key, b in list(self._breakers.items()) if b.state != "closed"]
        except RuntimeError:  # changed size during the copy
            return []

    def forget(self, keep: set[tuple]) -> None:
        """Drop breakers of versions no longer routed (after replaces and removals)."""
        for key in [k for k in self._breakers if k not in keep]:
            del self._breakers[key]

    def _set(self, key: tuple, b: _Breaker, state: str, reason: str) -> None:
        b.state = state
        if self.on_change is not None:
            self.on_change(key, state, reason)


__all__ = ["FAILURE_CODES", "Breakers"]
