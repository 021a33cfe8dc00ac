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
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from solo.core.spec import NAME_RE
from solo.errors import SoloError
from solo.files import write_atomic
from solo.registry.state import ServiceRecord, SnapshotInfo
from solo.runtime.launcher import call_host

log = logging.getLogger("solo.registry")
SNAPSHOT_TIMEOUT = 15.0  # the host gives the cell 10 s (host.SNAPSHOT_SECONDS); this covers Ray's part too
PARALLEL = 4  # snapshots asked for at once in a round (each may be up to [swap] max_state_bytes in memory)
MAX_HEADER = 4096


class SnapshotStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, tenant: str, name: str) -> Path:
        if not (NAME_RE.fullmatch(tenant or "") and NAME_RE.fullmatch(name or "")):
            raise ValueError(f"not a tenant and service name: {tenant!r}, {name!r}")
        return self.directory / tenant / f"{name}.json"

    def put(self, tenant: str, name: str, info: SnapshotInfo, data: bytes) -> None:
        path = self._path(tenant, name)
        for directory in (self.directory, path.parent):
            directory.mkdir(exist_ok=True)
            os.chmod(directory, 0o700)
        header = json.dumps(dataclasses.asdict(info)).encode()
        write_atomic(path, header + b"\n" + data)

    def info(self, tenant: str, name: str) -> SnapshotInfo | None:
        """The header of the service's snapshot file; None when there is none or it is not Solo's shape."""
        try:
            with open(self._path(tenant, name), "rb") as f:
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
        except (OSError, ValueError) as exc:  # the next start's sweep tries again
            log.warning("could not delete the snapshot of %s/%s: %s", tenant, name, exc)

    def sweep(self, keep: set[tuple[str, str]]) -> None:
        """At start: the files of services the registry no longer has go."""
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
        while True:
            await asyncio.sleep(every)
            try:
                await self._snapshot_round()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("a round of periodic snapshots failed")

    async def _snapshot_round(self) -> None:
        wanted = [r for r in self.state.services.values()
                  if r.state == "RUNNING" and r.key in self.hosts and r.key not in self.standby
                  and self._no_snapshot.get(r.key) != r.generation]
        limit = asyncio.Semaphore(PARALLEL)

        async def one(record: ServiceRecord) -> None:
            async with limit:
                try:
                    await self._take_snapshot(record)
                except Exception as exc:  # noqa: BLE001 - one service's snapshot never stops the others'
                    self._snapshot_skipped(record, f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(r) for r in wanted))

    async def _take_snapshot(self, record: ServiceRecord) -> None:
        """Ask one service for its snapshot() and keep it; anything wrong is logged, never raised."""
        key, handle = record.key, self.hosts.get(record.key)
        if handle is None:
            return
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
        if len(data) > max_bytes:
            self._snapshot_skipped(record, f"snapshot() returned {len(data)} bytes, over [swap] max_state_bytes")
            return
        if self.hosts.get(key) is not handle or self.state.services.get(key) is not record \
                or record.state != "RUNNING":
            return  # stopped, swapped, moved or crashed meanwhile: this state belongs to a run that is over
        before = self.state.snapshot_for(record)
        if before is None or before.digest != digest:
            candidate = SnapshotInfo(record.generation, record.restarts, record.version, self.state.clock(),
                                     len(data), digest)
            try:
                await asyncio.to_thread(self.snapshot_files.put, record.tenant, record.name, candidate, data)
            except (OSError, ValueError) as exc:
                self._snapshot_skipped(record, f"it could not be written to the data directory: {exc}")
                return
        # an unchanged state is not written again: the file keeps its first time, the state the latest
        self.state.snapshot_taken(record, len(data), digest, max_bytes)

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
