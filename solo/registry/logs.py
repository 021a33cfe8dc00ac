"""Services' logs: where a service's output is kept and how the gateway reads it.

Hosts send their service's output here in batches (`append_logs`, runtime/logship.py), proved by the host's
ticket: a batch is filed under the service the ticket names, so a host (and the cell behind it) can write only
its own service's log. The registry runs on the head node and keeps the store (registry/logstore.py) under
`<data-dir>/logs/`, so a service's logs outlive its host: a crash restart, a swap, a stop, a lost node, and are
read without it. Solo's own notes (started, crashed, restarted, swapped, stopped) are written here from the
events the registry commits, as stream "solo". Gateways read (`read_logs`) and long-poll for new lines.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time

from solo.errors import PermissionDenied
from solo.registry.logstore import MAX_TEXT, MAX_VERSION, STREAMS, LogStore
from solo.runtime.cell_process import printable

log = logging.getLogger("solo.registry")

MAX_BATCH_LINES = 20_000  # lines in one batch from a host (it sends at most 256 KiB of text at a time)
CLOCK_SKEW = 3600.0  # a host's time further off than this is replaced by the registry's
READ_LINES = 5000  # lines in one read_logs answer
READS_AT_ONCE = 2  # pages read at once (each holds a thread and the GIL for up to ~0.1 s), one per tenant
READ_BYTES = 1 << 20
MAX_WAIT = 30.0
CALLS_TARGET = 200.0  # append_logs calls a second the registry aims at: past it, hosts are asked to pause longer
TENANT_OVER_PAUSE = 2.0  # the pause asked of a host whose tenant is over its rate


def _line_of(raw, now: float) -> tuple[float, str, str, str] | None:
    """A host's [time, stream, version, text], checked (hosts are Solo's code, but what they relay is not)."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        return None
    when, stream, version, text = raw
    if stream not in STREAMS or not isinstance(version, str) or not isinstance(text, str):
        return None
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when) \
            or abs(when - now) > CLOCK_SKEW:
        when = now
    return float(when), stream, printable(version[:MAX_VERSION]), printable(text[:MAX_TEXT])


def _note_of(event, now: float) -> tuple[float, str, str, str] | None:
    """Solo's line (stream "solo") for a registry event about a service, or None."""
    p = event.payload
    version = str(p.get("version", ""))
    node = str(p.get("node_id", ""))[:12]
    text = {
        "service.started": f"started version {version} on node {node} (pid {p.get('pid')})",
        "service.restarted": f"restarted version {version} on node {node} (pid {p.get('pid')}, restart "
                             f"{p.get('restarts')})",
        "service.recovered": f"taken over by a restarted registry (version {version}, pid {p.get('pid')})",
        "service.crashed": f"crashed: {p.get('reason', '')}",
        "service.restarting": f"restarting (attempt {p.get('attempt')})",
        "service.failed": f"failed: {p.get('reason', '')}",
        "service.limit_exceeded": f"went over its {p.get('limit', 'memory')} limit (policy: {p.get('policy')})",
        "service.replaced": f"replaced: version {p.get('previous_version')} -> {version}",
        "service.swapped": f"swapped to version {version} (was {p.get('previous_version')}; state: {p.get('state')})",
        "service.rolled_back": f"rolled back to version {version} from {p.get('from_version')}: {p.get('reason')}",
        "service.rescheduled": f"moved to node {node} after node {str(p.get('from_node', ''))[:12]} was lost "
                               f"({p.get('state')})",
        "service.stopped": "stopped",
        "service.suspended": f"stopped ({p.get('reason', '')})",
    }.get(event.type)
    return None if text is None else (now, "solo", version[:MAX_VERSION], printable(text[:MAX_TEXT]))


class TenantRate:
    """Bytes a second of each tenant's output kept (a burst of 4 s of it); what is over it is counted per
    service and noted when its output is kept again."""

    def __init__(self):
        self.buckets: dict[str, tuple[float, float]] = {}  # tenant -> (bytes left, when)
        self.dropped: dict[tuple[str, str], int] = {}

    def take(self, key: tuple[str, str], size: int, rate: float) -> bool:
        if rate <= 0:
            return True
        now = time.monotonic()
        left, at = self.buckets.get(key[0], (4 * rate, now))
        left = min(4 * rate, left + (now - at) * rate)
        ok = size <= left
        self.buckets[key[0]] = (left - size if ok else left, now)
        if not ok:
            self.dropped[key] = self.dropped.get(key, 0) + size
        return ok


class LogsMixin:
    """Mixed into RegistryActor (registry/actor.py)."""

    async def _logs(self) -> LogStore:
        """The store (made on first use, in a thread: it indexes what earlier runs left), with the bounds in force
        (a config reload may have changed them)."""
        store = getattr(self, "_log_store", None)
        if store is None:
            made = getattr(self, "_log_opening", None)
            if made is None:
                c = self.config.logs
                made = self._log_opening = asyncio.ensure_future(asyncio.to_thread(
                    LogStore, self.config.data_dir / "logs", c.service_bytes, c.tenant_bytes, c.total_bytes, c.segments))
            store = await asyncio.shield(made)
            if getattr(self, "_log_store", None) is None:
                self._log_store, self._log_rate = store, TenantRate()
                self._log_waiters: dict[tuple[str, str], asyncio.Event] = {}
                self._log_reads = asyncio.Semaphore(READS_AT_ONCE)
                self._log_reading: dict[str, asyncio.Lock] = {}
        c = self.config.logs
        store.service_bytes, store.tenant_bytes, store.total_bytes = c.service_bytes, c.tenant_bytes, c.total_bytes
        store.segment_bytes = max(1024, c.service_bytes // c.segments)
        return store

    async def _keep_lines(self, key: tuple[str, str], lines: list[tuple[float, str, str, str]]) -> None:
        store = await self._logs()
        written = await asyncio.to_thread(store.append, key[0], key[1], lines)
        if written:
            lost = store.take_dropped(*key)
            if lost:
                note = (time.time(), "solo", lines[-1][2], f"dropped {lost} bytes of output (the data directory's "
                        "disk was nearly full)")
                await asyncio.to_thread(store.append, key[0], key[1], [note])
        waiter = self._log_waiters.pop(key, None)  # (made with the store)
        if waiter is not None:
            waiter.set()

    def _append_pause(self) -> float:
        """The pause between batches asked of hosts: half a second until CALLS_TARGET calls a second come in, then
        in proportion (each host sends less often, in bigger batches)."""
        now = time.monotonic()
        start, count = getattr(self, "_append_window", (now, 0))
        if now - start >= 1.0:
            self._last_append_rate = count / (now - start)
            start, count = now, 0
        self._append_window = (start, count + 1)
        return 0.5 * max(1.0, getattr(self, "_last_append_rate", 0.0) / CALLS_TARGET)

    async def append_logs(self, tenant: str, name: str, host: str, ticket: str, lines: list) -> dict:
        """A batch of a service's output from its host (open to hosts: the ticket proves which service the host
        was loaded with, as for `resolve`). A batch for a service that no longer exists (removed) is dropped.
        Answers {"kept": lines kept, "pause": seconds the host should wait before its next batch}."""
        await self.start()
        if not all(isinstance(v, str) for v in (tenant, name, host, ticket)) or \
                not hmac.compare_digest(ticket, self._ticket(tenant, name, host)):
            raise PermissionDenied("this host was not loaded with the service it claims to run")
        key = (tenant, name)
        pause = self._append_pause()
        if key not in self.state.services or not isinstance(lines, list):
            return {"kept": 0, "pause": pause}
        await self._logs()
        rates = self._log_rate
        now = time.time()
        rate = self.config.logs.tenant_rate_bytes
        # the tenant's rate first, on the raw size (cheap, on the loop), so what is over it costs no more work
        taken = [raw for raw in lines[:MAX_BATCH_LINES]
                 if isinstance(raw, (list, tuple)) and len(raw) == 4 and isinstance(raw[3], str)
                 and (raw[1] == "solo" or rates.take(key, min(len(raw[3]), MAX_TEXT) + 64, rate))]
        kept = await asyncio.to_thread(lambda: [line for raw in taken if (line := _line_of(raw, now)) is not None])
        if key not in self.state.services:  # removed meanwhile: its folder is gone and stays gone
            return {"kept": 0, "pause": pause}
        over = key in rates.dropped  # some of this tenant's output was over its rate: this host pauses longer
        lost = rates.dropped.pop(key, 0) if kept else 0
        if lost:
            kept.append((now, "solo", kept[-1][2], f"dropped {lost} bytes of output (over the tenant's log rate of "
                         f"{rate / 1024:g} KiB/s: [logs] tenant_rate_bytes)"))
        if kept:
            await self._keep_lines(key, kept)
        return {"kept": len(kept), "pause": max(pause, TENANT_OVER_PAUSE) if over else pause}

    async def _note_events(self, events) -> None:
        """Solo's own lines for what happened to services (called with the events just committed); a removed
        service's logs go with it."""
        now = time.time()
        notes: dict[tuple[str, str], list] = {}
        for event in events:
            key = (event.tenant, event.subject)
            if event.type == "service.removed":
                notes.pop(key, None)
                with contextlib.suppress(ValueError):
                    await asyncio.to_thread((await self._logs()).forget, *key)
                continue
            line = _note_of(event, now)
            if line is not None:
                notes.setdefault(key, []).append(line)
        for key, lines in notes.items():
            try:
                await self._keep_lines(key, lines)
            except (OSError, ValueError) as exc:  # a note is not worth failing the operation for
                log.warning("a note could not be written to the log of %s/%s: %s", key[0], key[1], exc)

    async def _read_page(self, tenant: str, name: str, after: int, since: float, tail: int):
        """One page from the store, in a thread: one read per tenant at a time and READS_AT_ONCE in all, so a
        tenant that reads in a loop delays only its own reads and never fills the registry's threads."""
        lock = self._log_reading.setdefault(tenant, asyncio.Lock())  # one per tenant that reads (the operator's)
        async with lock, self._log_reads:
            return await asyncio.to_thread(self._log_store.read, tenant, name, after, since, tail, READ_LINES,
                                           READ_BYTES)

    async def read_logs(self, tenant: str, name: str, after: int = -1, since_seconds: float = 0.0, tail: int = 0,
                        wait_seconds: float = 0.0) -> dict:
        """The service's kept lines after sequence number `after` (see LogStore.read); with `wait_seconds`,
        waits that long for a line when there is none yet (follow). A service the tenant does not have is
        NOT_FOUND, with the same words whether it exists for another tenant or not at all."""
        await self.start()
        store = await self._logs()
        if not store.has(tenant, name):
            self.state.get(tenant, name)  # NotFound, worded as for any missing service
        since = time.time() - since_seconds if since_seconds > 0 else 0.0
        key = (tenant, name)
        waiter = self._log_waiters.setdefault(key, asyncio.Event()) if wait_seconds > 0 else None
        page = await self._read_page(tenant, name, after, since, tail)
        if not page.lines and waiter is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), min(wait_seconds, MAX_WAIT))
            page = await self._read_page(tenant, name, page.last, since, 0)
        return {"lines": [(r["n"], r["time"], r["stream"], r["version"], r["text"]) for r in page.lines],
                "last": page.last, "skipped": page.skipped}


__all__ = ["LogsMixin"]
