"""Periodic snapshots: the latest snapshot() of each running service, so a service moved off a lost node
(nodeloss.py) comes back with its state.

Every `[runtime] snapshot_seconds` the registry asks each RUNNING service that has a snapshot() for it
(`ServiceHost.snapshot`: the service keeps serving, nothing is drained or frozen). What comes back is
the tenant's data and untrusted: JSON text of at most `[swap] max_state_bytes`, checked by the host and
again here. A snapshot() that raises, hangs or returns something else is logged and skipped; it never
stops the service or the registry.

The registry state keeps what it knows of each service's latest snapshot (`SnapshotInfo`: one per
service, for one run of it); the text itself is kept in one file per service,
`<data-dir>/snapshots/<tenant>/<name>.json` (0600 in 0700 directories, like the specs and the history),
never in memory between rounds and never in events, and survives a registry restart. A file is a
one-line JSON header (the `SnapshotInfo`) followed by the text.

Tenant code is hostile, so no tenant can slow another's snapshots or fill the disk: each service is on
its own clock (due `snapshot_seconds` after its last one started), at most PER_TENANT of a tenant's
snapshots are in flight and PARALLEL in all, and a free slot goes to the tenant served longest ago
(`SnapshotSchedule`); a slow snapshot() delays only its own tenant's. A tenant's files together stay
under `[runtime] snapshot_tenant_bytes` (past it its new snapshots are skipped and its older ones
stay), and nothing is written when the data directory's disk is nearly full (MIN_FREE_BYTES).
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from solo.core.spec import NAME_RE
from solo.errors import SoloError
from solo.files import write_atomic
from solo.registry.state import ServiceRecord, SnapshotInfo
from solo.runtime.launcher import call_host

log = logging.getLogger("solo.registry")
SNAPSHOT_TIMEOUT = 15.0  # the host gives the cell 10 s (host.SNAPSHOT_SECONDS); this covers Ray's part too
PARALLEL = 4  # snapshots in flight at once (each may hold up to [swap] max_state_bytes in memory, twice)
PER_TENANT = 1  # of them, one tenant's: its slow snapshot()s wait for each other, not for other tenants'
TICK = 1.0  # how often the schedule looks for services that are due, at most
MIN_FREE_BYTES = 1 << 30  # nothing is written when the disk would keep less (or less than MIN_FREE_FRACTION)
MIN_FREE_FRACTION = 0.05
MAX_HEADER = 4096


class NoRoom(Exception):
    """A snapshot not written for lack of room: over the tenant's budget (`tenant_wide`) or a nearly full disk."""

    def __init__(self, message: str, tenant_wide: bool):
        super().__init__(message)
        self.tenant_wide = tenant_wide


class SnapshotSchedule:
    """Whose snapshot to ask for next. Each service is due `every` seconds after its last one started (or
    after it was first seen); of the due ones, at most `parallel` are in flight, at most `per_tenant` of any
    one tenant, and free slots go first to the tenants whose last snapshot started longest ago."""

    def __init__(self, every: float, parallel: int = PARALLEL, per_tenant: int = PER_TENANT):
        self.every, self.parallel, self.per_tenant = every, parallel, per_tenant
        self.due: dict[tuple[str, str], float] = {}
        self.busy: dict[tuple[str, str], float] = {}  # in flight: when it started
        self.turn: dict[str, float] = {}  # each tenant's last start
        self.wake = asyncio.Event()  # set when a slot frees

    def pick(self, keys, now: float) -> list[tuple[str, str]]:
        """Of the services that may be snapshotted (`keys`), the ones to start now (marked in flight)."""
        keys = set(keys)
        for key in [k for k in self.due if k not in keys and k not in self.busy]:
            del self.due[key]  # stopped, removed or without snapshot(): forgotten
        present = {key[0] for key in self.due}
        for tenant in [t for t in self.turn if t not in present]:
            del self.turn[tenant]
        ready: dict[str, list[tuple[str, str]]] = {}
        for key in keys:
            if self.due.setdefault(key, now + self.every) <= now and key not in self.busy:
                ready.setdefault(key[0], []).append(key)
        free = self.parallel - len(self.busy)
        in_flight = Counter(key[0] for key in self.busy)
        chosen = []
        for tenant in sorted(ready, key=lambda t: (self.turn.get(t, float("-inf")), t)):
            room = min(self.per_tenant - in_flight[tenant], free - len(chosen))
            if room <= 0:
                continue
            for key in sorted(ready[tenant], key=lambda k: (self.due[k], k))[:room]:
                chosen.append(key)
                self.busy[key], self.turn[tenant] = now, now
        return chosen

    def done(self, key: tuple[str, str], now: float) -> None:
        started = self.busy.pop(key, now)
        if key in self.due:
            self.due[key] = max(started + self.every, now)
        self.wake.set()


class SnapshotStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._sizes: dict[tuple[str, str], int] = {}  # bytes of each file known to be on disk

    def tenant_bytes(self, tenant: str) -> int:
        return sum(size for (t, _), size in list(self._sizes.items()) if t == tenant)

    def _room(self, tenant: str, name: str, size: int, tenant_budget: int) -> None:
        """Raise NoRoom when writing `size` bytes for the service would pass the tenant's budget or leave
        the disk nearly full."""
        if tenant_budget > 0:
            others = self.tenant_bytes(tenant) - self._sizes.get((tenant, name), 0)
            if others + size > tenant_budget:
                raise NoRoom(f"the tenant's snapshots would take {others + size} bytes, over [runtime] "
                             f"snapshot_tenant_bytes ({tenant_budget})", tenant_wide=True)
        where = self.directory if self.directory.is_dir() else self.directory.parent
        disk = shutil.disk_usage(where)
        keep = min(MIN_FREE_BYTES, int(disk.total * MIN_FREE_FRACTION))
        if disk.free - size < keep:
            raise NoRoom(f"the data directory's disk has {disk.free >> 20} MiB free; snapshots keep at least "
                         f"{keep >> 20} MiB free for the event log", tenant_wide=False)

    def _path(self, tenant: str, name: str) -> Path:
        if not (NAME_RE.fullmatch(tenant or "") and NAME_RE.fullmatch(name or "")):
            raise ValueError(f"not a tenant and service name: {tenant!r}, {name!r}")
        return self.directory / tenant / f"{name}.json"

    def put(self, tenant: str, name: str, info: SnapshotInfo, data: bytes, tenant_budget: int = 0) -> None:
        """Write the service's snapshot file (replacing its last); NoRoom when it would not fit (see _room)."""
        path = self._path(tenant, name)
        header = json.dumps(dataclasses.asdict(info)).encode()
        size = len(header) + 1 + len(data)
        self._room(tenant, name, size, tenant_budget)
        for directory in (self.directory, path.parent):
            directory.mkdir(exist_ok=True)
            os.chmod(directory, 0o700)
        write_atomic(path, header + b"\n" + data)
        self._sizes[(tenant, name)] = size

    def info(self, tenant: str, name: str) -> SnapshotInfo | None:
        """The header of the service's snapshot file; None when there is none or it is not Solo's shape."""
        try:
            with open(self._path(tenant, name), "rb") as f:
                self._sizes[(tenant, name)] = os.fstat(f.fileno()).st_size  # on disk, whatever it holds
                return _info(f.readline(MAX_HEADER))
        except (OSError, ValueError):
            return None

    def read(self, tenant: str, name: str, info: SnapshotInfo) -> str | None:
        """The text of the snapshot `info` describes; None when the file holds another (or a damaged) one."""
        try:
            with open(self._path(tenant, name), "rb") as f:
                if not _same(_info(f.readline(MAX_HEADER)), info):
                    return None
                data = f.read(info.size + 1)
        except (OSError, ValueError):
            return None
        if len(data) != info.size or hashlib.sha256(data).hexdigest() != info.digest:
            return None
        return data.decode()

    def forget(self, tenant: str, name: str) -> None:
        try:
            self._path(tenant, name).unlink(missing_ok=True)
            self._sizes.pop((tenant, name), None)
        except (OSError, ValueError) as exc:  # the next start's sweep tries again
            log.warning("could not delete the snapshot of %s/%s: %s", tenant, name, exc)

    def sweep(self, keep: set[tuple[str, str]]) -> None:
        """At start: the files of services the registry no longer has go."""
        for key in [k for k in self._sizes if k not in keep]:
            del self._sizes[key]
        if not self.directory.is_dir():
            return
        for tenant_dir in [d for d in self.directory.iterdir()]:
            if not tenant_dir.is_dir():
                tenant_dir.unlink(missing_ok=True)
                continue
            for path in tenant_dir.iterdir():
                if (tenant_dir.name, path.stem) not in keep or path.suffix != ".json":
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            try:
                tenant_dir.rmdir()
            except OSError:
                pass  # not empty


def _info(line: bytes) -> SnapshotInfo:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("the header is not an object")
    info = SnapshotInfo(**{f.name: data[f.name] for f in dataclasses.fields(SnapshotInfo)})
    if not (isinstance(info.generation, int) and isinstance(info.restarts, int) and isinstance(info.size, int)
            and isinstance(info.version, str) and isinstance(info.digest, str)
            and isinstance(info.taken_at, (int, float))):
        raise ValueError("a header field has the wrong type")
    return info


def _same(a: SnapshotInfo, b: SnapshotInfo) -> bool:
    """The same snapshot (an unchanged state is not written again, so the file may keep an older time)."""
    return (a.generation, a.restarts, a.version, a.size, a.digest) == (b.generation, b.restarts, b.version, b.size,
                                                                       b.digest)


def _digest(text: str) -> tuple[bytes, str]:
    data = text.encode()
    return data, hashlib.sha256(data).hexdigest()


class SnapshotMixin:
    """The registry actor's periodic snapshots (mixed into RegistryActor)."""

    async def _snapshot_loop(self) -> None:
        every = self.config.runtime.snapshot_seconds
        if every <= 0:
            return
        schedule = self._snapshot_schedule = SnapshotSchedule(every)
        while True:
            try:
                self._snapshot_start_due(schedule, time.monotonic())
            except Exception:  # noqa: BLE001 - the next look tries again
                log.exception("starting periodic snapshots failed")
            schedule.wake.clear()
            try:  # until a slot frees, or the next look for services that are due
                await asyncio.wait_for(schedule.wake.wait(), min(every, TICK))
            except TimeoutError:
                pass

    def _snapshot_start_due(self, schedule: SnapshotSchedule, now: float) -> None:
        wanted = {r.key: r for r in self.state.services.values()
                  if r.state == "RUNNING" and r.key in self.hosts and r.key not in self.standby
                  and self._no_snapshot.get(r.key) != r.generation}
        for key in schedule.pick(wanted, now):
            self._spawn(self._snapshot_one(schedule, wanted[key]))

    async def _snapshot_one(self, schedule: SnapshotSchedule, record: ServiceRecord) -> None:
        try:
            await self._take_snapshot(record)
        except Exception as exc:  # noqa: BLE001 - one service's snapshot never stops the others'
            self._snapshot_skipped(record, f"{type(exc).__name__}: {exc}")
        finally:
            schedule.done(record.key, time.monotonic())

    def _same_run(self, record: ServiceRecord, handle, run: tuple[int, int]) -> bool:
        return (self.hosts.get(record.key) is handle and self.state.services.get(record.key) is record
                and record.state == "RUNNING" and (record.generation, record.restarts) == run)

    async def _take_snapshot(self, record: ServiceRecord) -> None:
        """Ask one service for its snapshot() and keep it; anything wrong is logged, never raised."""
        key, handle = record.key, self.hosts.get(record.key)
        if handle is None:
            return
        run = (record.generation, record.restarts)
        max_bytes = self.config.swap.max_state_bytes
        try:
            answer = await call_host(handle.snapshot.remote(max_bytes), SNAPSHOT_TIMEOUT,
                                     f"the snapshot() of {record.name!r}")
        except SoloError as exc:
            self._snapshot_skipped(record, exc.message)
            return
        if not isinstance(answer, dict) or answer.get("has_snapshot") is not True:
            self._no_snapshot[key] = record.generation  # not asked again until the service changes
            return
        text = answer.get("state")
        if text is None:
            return  # snapshot() returned None: nothing to keep this time
        if not isinstance(text, str) or len(text) > max_bytes:
            self._snapshot_skipped(record, "the host's answer was not JSON text within [swap] max_state_bytes")
            return
        data, digest = await asyncio.to_thread(_digest, text)
        del text, answer
        if len(data) > max_bytes:
            self._snapshot_skipped(record, f"snapshot() returned {len(data)} bytes, over [swap] max_state_bytes")
            return
        if not self._same_run(record, handle, run):
            return  # stopped, swapped, moved or crashed meanwhile: this state belongs to a run that is over
        before = self.state.snapshot_for(record)
        if before is not None and before.digest == digest:
            # an unchanged state is not written again: the file keeps its first time, the state the latest
            self.state.snapshot_taken(record, len(data), digest, max_bytes)
            return
        lock = self._lock(key)
        if lock.locked():  # being deployed, stopped or swapped: the next one, once it is done
            self._snapshot_skipped(record, "the service was being changed (a deploy, stop or swap)")
            return
        async with lock:  # a stop waits for the write, then deletes the file: none is left behind
            if not self._same_run(record, handle, run):
                return
            candidate = SnapshotInfo(record.generation, record.restarts, record.version, self.state.clock(),
                                     len(data), digest)
            budget = self.config.runtime.snapshot_tenant_bytes
            try:
                await asyncio.to_thread(self.snapshot_files.put, record.tenant, record.name, candidate, data,
                                        budget)
            except NoRoom as exc:
                self._snapshot_no_room(record, exc)
                return
            except (OSError, ValueError) as exc:
                self._snapshot_skipped(record, f"it could not be written to the data directory: {exc}")
                return
            self._snapshot_room_again(record.tenant)
            if self._same_run(record, handle, run):
                self.state.snapshot_taken(record, len(data), digest, max_bytes)
            elif (self.state.services.get(key) is record and record.state == "RESTARTING"
                  and (record.generation, record.restarts) == run):
                self.state.snapshots[key] = candidate  # its node was lost meanwhile: it moves on with this one
            else:  # crashed meanwhile: this run is over, and so is its file
                self.snapshot_files.forget(record.tenant, record.name)

    def _snapshot_no_room(self, record: ServiceRecord, exc: NoRoom) -> None:
        """Said once per tenant (or once for the disk) until there is room again; counted per tenant."""
        skipped = self.__dict__.setdefault("snapshots_skipped_for_room", Counter())
        skipped[record.tenant] += 1
        short = self.__dict__.setdefault("_snapshot_short", set())
        what = record.tenant if exc.tenant_wide else ""
        if what not in short:
            short.add(what)
            log.warning("periodic snapshots of %s are skipped, older ones kept: %s",
                        f"tenant {record.tenant}" if exc.tenant_wide else "every tenant", exc)
        else:
            log.debug("the periodic snapshot of %s/%s was skipped: %s", record.tenant, record.name, exc)

    def _snapshot_room_again(self, tenant: str) -> None:
        short = self.__dict__.get("_snapshot_short")
        if short:
            short.discard(tenant)
            short.discard("")

    def _snapshot_skipped(self, record: ServiceRecord, why: str) -> None:
        """Said once per run of a service (a broken snapshot() would otherwise log every round)."""
        if self._snapshot_warned.get(record.key) != (record.generation, record.restarts):
            self._snapshot_warned[record.key] = (record.generation, record.restarts)
            log.warning("the periodic snapshot of %s/%s was not kept: %s", record.tenant, record.name, why[:500])
        else:
            log.debug("the periodic snapshot of %s/%s was not kept: %s", record.tenant, record.name, why[:500])

    async def _snapshot_text(self, record: ServiceRecord) -> tuple[str | None, float | None]:
        """The kept snapshot of this run of the service and when it was taken, or (None, None)."""
        info = self.state.snapshot_for(record)
        if info is None:
            return None, None
        text = await asyncio.to_thread(self.snapshot_files.read, record.tenant, record.name, info)
        return (text, info.taken_at) if text is not None else (None, None)
