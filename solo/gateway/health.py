"""What the gateway's health answers mean, from what it already knows. Pure: a clock in, verdicts out.

Liveness (`/health`): the process serves: its event loop ran within `wedged_after` seconds (the monitor
beats every second; a loop blocked that long is wedged and a restart is the cure).

Readiness (`/ready`, and grpc.health.v1's "" and "solo.v1.Gateway" entries): every one of
- `registry`: the route follower's last request to the registry was answered (not an error),
- `routes`: the route table was synced with the registry within `stale_after` seconds (the follower's long poll
  comes back at least every `poll_seconds`; a registry that hangs is caught here),
- `event_log`: the event log answered its last status check and its last write succeeded (operations fail closed
  otherwise), when the gateway follows one,
- and the gateway is not stopping (`draining`).

The reasons are Solo's fixed words (no exception text, no tenant, service or path): /health and /ready answer
without the metrics token. `answer(path)` gives the HTTP status and JSON body for "/health" and "/ready", so
every transport that serves them (the metrics HTTP server, the REST gateway) says the same.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

HEALTH_PATHS = ("/health", "/ready")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checks: dict[str, dict] = field(default_factory=dict)  # name -> {"ok": bool, "reason": str (when not ok)}

    @property
    def status(self) -> int:
        return 200 if self.ok else 503

    def body(self, what: str) -> dict:
        return {"status": what if self.ok else f"not {what}", "checks": self.checks}


@dataclass
class _Check:
    ok: bool
    reason: str = ""


class Health:
    def __init__(self, clock: Callable[[], float] = time.monotonic, stale_after: float = 60.0,
                 wedged_after: float = 30.0, event_log: bool = True):
        """`event_log`: whether this gateway follows an event log (a gateway started without one has no such
        check). Until the first answer of each source the gateway is not ready."""
        self.clock = clock
        self.stale_after = stale_after
        self.wedged_after = wedged_after
        now = clock()
        self._registry = _Check(False, "the registry has not answered yet")
        self._synced_at: float | None = None
        self._event_log = _Check(False, "the event log has not been checked yet") if event_log else None
        self._beat = now
        self._draining = False

    # -- what the gateway reports ----------------------------------------------------------------------------
    def routes_synced(self) -> None:
        """The route follower got an answer from the registry (a new table or its long poll's timeout)."""
        self._registry = _Check(True)
        self._synced_at = self.clock()

    def registry_failed(self, unavailable: bool = True) -> None:
        """The route follower's request to the registry failed (`unavailable`: Ray says the actor is gone or
        restarting; otherwise it raised)."""
        self._registry = _Check(False, "the registry is unavailable (restarting or stopped)" if unavailable
                                else "the registry failed to answer the route table")

    def event_log_status(self, answered: bool, writable: bool = True) -> None:
        """The event log's status check: whether it answered, and whether its last write succeeded."""
        if not answered:
            self._event_log = _Check(False, "the event log does not answer (restarting or stopped): deploys, stops "
                                            "and swaps fail closed")
        elif not writable:
            self._event_log = _Check(False, "the event log's last write failed (disk full or not writable?): "
                                            "deploys, stops and swaps fail closed")
        else:
            self._event_log = _Check(True)

    def beat(self) -> None:
        """The event loop ran (the monitor calls this every second)."""
        self._beat = self.clock()

    def drain(self) -> None:
        """The gateway is stopping: not ready from now on."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    # -- verdicts ------------------------------------------------------------------------------------------
    def liveness(self) -> Verdict:
        stalled = self.clock() - self._beat
        if stalled > self.wedged_after:
            return Verdict(False, {"event_loop": {"ok": False, "reason": f"the gateway's event loop has not run for "
                                                                         f"{stalled:.0f} s"}})
        return Verdict(True, {"event_loop": {"ok": True}})

    def readiness(self) -> Verdict:
        checks = {"registry": self._registry, "routes": self._routes()}
        if self._event_log is not None:
            checks["event_log"] = self._event_log
        if self._draining:
            checks["draining"] = _Check(False, "the gateway is stopping")
        out = {name: {"ok": True} if c.ok else {"ok": False, "reason": c.reason} for name, c in checks.items()}
        return Verdict(all(c.ok for c in checks.values()), out)

    def _routes(self) -> _Check:
        if self._synced_at is None:
            return _Check(False, "the route table has not been loaded yet")
        age = self.clock() - self._synced_at
        if age > self.stale_after:
            return _Check(False, f"the route table was last synced with the registry {age:.0f} s ago (more than "
                                 f"{self.stale_after:.0f} s)")
        return _Check(True)

    def answer(self, path: str) -> tuple[int, dict]:
        """(HTTP status, JSON body) for "/health" (liveness) or "/ready" (readiness): 200 or 503, and which checks
        failed, why. Callable from any thread."""
        if path == "/health":
            verdict, what = self.liveness(), "alive"
        elif path == "/ready":
            verdict, what = self.readiness(), "ready"
        else:
            raise ValueError(f"no health path {path!r}; one of {', '.join(HEALTH_PATHS)}")
        return verdict.status, verdict.body(what)


async def follow(health: Health, publish: Callable[[bool], Awaitable[None]], shown: bool | None = None,
                 every: float = 1.0, each: Callable[[bool], None] | None = None) -> None:
    """The gateway's monitor: beat every `every` seconds (liveness), `publish` readiness whenever it changes
    (grpc health's entries), `shown` being what was published last, and tell `each` (the gauge) every time."""
    while True:
        health.beat()
        ready = health.readiness().ok
        if each is not None:
            each(ready)
        if ready != shown and not health.draining:  # a stopping gateway's grpc health is set by its stop
            await publish(ready)
            shown = ready
        await asyncio.sleep(every)


__all__ = ["HEALTH_PATHS", "Health", "Verdict", "follow"]
