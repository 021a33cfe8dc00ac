"""Services' output on disk: `<data-dir>/logs/<tenant>/<service>/`, bounded per service, per tenant and in all.

Each service's lines go to rotating segments (JSON lines, named after their first line's sequence number): a new
segment starts when the newest would pass `service_bytes / segments`, and the oldest go while the service holds
more than `service_bytes`. A tenant past `tenant_bytes` loses its oldest segment (whichever of its services holds
it), and the store past `total_bytes` takes the oldest segment of the tenant holding the most: a tenant with many
services, or one that floods, pushes out only its own history, and never another tenant's. Nothing is written
while the disk has less than min(1 GiB, 5 %) free. Every line has a sequence number per service (`n`), so a
reader resumes after the last it saw and learns how many were rotated away before it read them. No Ray here: the
registry actor (registry/logs.py) owns one store and calls it from a thread.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from solo.core.spec import NAME_RE

STREAMS = ("stdout", "stderr", "solo")
MAX_TEXT = 8192  # characters of one line kept; a longer line is cut (the relay already splits long output)
MAX_VERSION = 64
MIN_FREE_BYTES = 1 << 30  # nothing is written when the disk would keep less (or less than MIN_FREE_FRACTION)
MIN_FREE_FRACTION = 0.05
DISK_CHECK_SECONDS = 1.0
TAIL_READ = 64 << 10  # bytes read from a segment's end to find its last sequence number at start-up


@dataclass
class Segment:
    first: int  # sequence number of its first line
    path: Path
    size: int = 0
    first_time: float = 0.0  # when its first line was written: the oldest segment of a tenant goes first


@dataclass
class ServiceLog:
    segments: deque[Segment] = field(default_factory=deque)
    next_seq: int = 1

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)


@dataclass
class Page:
    lines: list[dict]  # {"n", "time", "stream", "version", "text"}, oldest first
    last: int  # the sequence number to resume after
    skipped: int = 0  # lines between the reader's position and the first kept one (rotated away meanwhile)


def encode(seq: int, when: float, stream: str, version: str, text: str) -> bytes:
    return json.dumps({"n": seq, "t": round(when, 6), "s": stream, "v": version, "m": text},
                      ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def number_of(raw: bytes) -> int:
    """A line's sequence number without parsing the rest (lines start `{"n":<number>,`); -1 if it does not."""
    end = raw.find(b",", 5, 32)
    try:
        return int(raw[5:end]) if raw.startswith(b'{"n":') and end > 0 else -1
    except ValueError:
        return -1


def decode(raw: bytes) -> dict | None:
    try:
        row = json.loads(raw)
        return {"n": int(row["n"]), "time": float(row["t"]), "stream": str(row["s"]), "version": str(row["v"]),
                "text": str(row["m"])}
    except (ValueError, TypeError, KeyError):
        return None  # a line cut short by a crash mid-write


class LogStore:
    def __init__(self, directory: Path, service_bytes: int, tenant_bytes: int, total_bytes: int, segments: int = 4,
                 clock: Callable[[], float] = time.time, min_free: Callable[[int], int] | None = None):
        self.directory = Path(directory)
        self.service_bytes, self.tenant_bytes, self.total_bytes = service_bytes, tenant_bytes, total_bytes
        self.segment_bytes = max(1024, service_bytes // max(1, segments))
        self.clock = clock
        self.min_free = min_free or (lambda total: min(MIN_FREE_BYTES, int(total * MIN_FREE_FRACTION)))
        self.logs: dict[tuple[str, str], ServiceLog] = {}
        self.tenant_sizes: dict[str, int] = {}
        self.dropped: dict[tuple[str, str], int] = {}  # bytes refused for lack of disk, per service, until noted
        self._lock = threading.Lock()
        self._disk_ok, self._disk_at = True, -math.inf
        self._scan()

    # -- start-up ------------------------------------------------------------------------------------
    def _scan(self) -> None:
        """Index what earlier runs left (each service's segments and its next sequence number)."""
        if not self.directory.is_dir():
            return
        for tenant_dir in sorted(self.directory.iterdir()):
            if not (tenant_dir.is_dir() and NAME_RE.fullmatch(tenant_dir.name)):
                continue
            for service_dir in sorted(tenant_dir.iterdir()):
                if service_dir.is_dir() and NAME_RE.fullmatch(service_dir.name):
                    self._scan_service(tenant_dir.name, service_dir.name, service_dir)

    def _scan_service(self, tenant: str, name: str, where: Path) -> None:
        found = []
        for path in where.glob("*.jsonl"):
            try:
                found.append(Segment(int(path.stem), path, path.stat().st_size, path.stat().st_mtime))
            except (ValueError, OSError):
                continue
        if not found:
            return
        found.sort(key=lambda s: s.first)
        found[-1].size = self._cut_torn_end(found[-1].path, found[-1].size)
        log = ServiceLog(deque(found), found[-1].first)
        log.next_seq = max(found[-1].first, self._last_seq(found[-1].path) + 1)
        for segment in found:
            segment.first_time = self._first_time(segment.path, segment.first_time)
        self.logs[(tenant, name)] = log
        self.tenant_sizes[tenant] = self.tenant_sizes.get(tenant, 0) + log.size

    @staticmethod
    def _cut_torn_end(path: Path, size: int) -> int:
        """A line a crash cut short would glue to the next one written: the file ends at its last whole line."""
        try:
            with open(path, "r+b") as f:
                f.seek(max(0, size - TAIL_READ))
                tail = f.read()
                if tail and not tail.endswith(b"\n"):
                    size -= len(tail) - (tail.rfind(b"\n") + 1)
                    f.truncate(size)
        except OSError:
            pass
        return size

    @staticmethod
    def _last_seq(path: Path) -> int:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL_READ))
                rows = [decode(raw) for raw in f.read().split(b"\n")]
        except OSError:
            return 0
        return max((r["n"] for r in rows if r is not None), default=0)

    @staticmethod
    def _first_time(path: Path, default: float) -> float:
        try:
            with open(path, "rb") as f:
                row = decode(f.readline(MAX_TEXT * 8))
        except OSError:
            return default
        return row["time"] if row is not None else default

    # -- writing -------------------------------------------------------------------------------------
    def _dir(self, tenant: str, name: str) -> Path:
        if not (NAME_RE.fullmatch(tenant or "") and NAME_RE.fullmatch(name or "")):
            raise ValueError(f"not a tenant and service name: {tenant!r}, {name!r}")
        return self.directory / tenant / name

    def _room_on_disk(self) -> bool:
        now = time.monotonic()
        if now - self._disk_at >= DISK_CHECK_SECONDS:
            where = self.directory if self.directory.is_dir() else self.directory.parent
            disk = shutil.disk_usage(where)
            self._disk_ok, self._disk_at = disk.free > self.min_free(disk.total), now
        return self._disk_ok

    def append(self, tenant: str, name: str, lines: list[tuple[float, str, str, str]]) -> int:
        """Write (time, stream, version, text) lines for the service, then apply the bounds. Returns the bytes
        written; lines refused for a nearly full disk are counted in `dropped`."""
        where = self._dir(tenant, name)
        with self._lock:
            key = (tenant, name)
            if not self._room_on_disk():
                self.dropped[key] = self.dropped.get(key, 0) + sum(len(t) for *_, t in lines)
                return 0
            for directory in (self.directory, where.parent, where):
                if not directory.is_dir():
                    directory.mkdir(mode=0o700, exist_ok=True)
                    os.chmod(directory, 0o700)
            log = self.logs.setdefault(key, ServiceLog())
            written = 0
            for segment, chunk in self._place(log, where, lines):
                fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, chunk)
                finally:
                    os.close(fd)
                segment.size += len(chunk)
                written += len(chunk)
            self.tenant_sizes[tenant] = self.tenant_sizes.get(tenant, 0) + written
            self._bound(key)
            return written

    def _place(self, log: ServiceLog, where: Path, lines) -> list[tuple[Segment, bytes]]:
        """The encoded lines grouped by the segment each goes to (new segments started as they fill)."""
        out: list[tuple[Segment, bytearray]] = []
        for when, stream, version, text in lines:
            raw = encode(log.next_seq, when, stream, version[:MAX_VERSION], text[:MAX_TEXT])
            newest = log.segments[-1] if log.segments else None
            pending = len(out[-1][1]) if out and out[-1][0] is newest else 0
            if newest is None or (newest.size + pending + len(raw) > self.segment_bytes and newest.size + pending):
                newest = Segment(log.next_seq, where / f"{log.next_seq:012d}.jsonl", 0, when)
                log.segments.append(newest)
            if not out or out[-1][0] is not newest:
                out.append((newest, bytearray()))
            out[-1][1].extend(raw)
            log.next_seq += 1
        return [(segment, bytes(chunk)) for segment, chunk in out]

    def _bound(self, key: tuple[str, str]) -> None:
        tenant = key[0]
        log = self.logs[key]
        while log.size > self.service_bytes and len(log.segments) > 1:
            self._drop_oldest(key)
        while self.tenant_sizes.get(tenant, 0) > self.tenant_bytes and self._drop_tenant_oldest(tenant):
            pass
        while sum(self.tenant_sizes.values()) > self.total_bytes:
            biggest = max(self.tenant_sizes, key=self.tenant_sizes.get)
            if not self._drop_tenant_oldest(biggest):
                break

    def _drop_tenant_oldest(self, tenant: str) -> bool:
        held = [(log.segments[0].first_time, key) for key, log in self.logs.items() if key[0] == tenant and log.segments]
        if not held:
            return False
        self._drop_oldest(min(held)[1])
        return True

    def _drop_oldest(self, key: tuple[str, str]) -> None:
        segment = self.logs[key].segments.popleft()
        try:
            segment.path.unlink()
        except FileNotFoundError:
            pass
        self.tenant_sizes[key[0]] -= segment.size

    def forget(self, tenant: str, name: str) -> None:
        """Delete the service's logs (it was removed: `solo stop --remove`)."""
        where = self._dir(tenant, name)
        with self._lock:
            log = self.logs.pop((tenant, name), None)
            self.dropped.pop((tenant, name), None)
            if log is not None:
                self.tenant_sizes[tenant] -= log.size
                if not self.tenant_sizes[tenant]:
                    del self.tenant_sizes[tenant]
            shutil.rmtree(where, ignore_errors=True)
            try:
                where.parent.rmdir()  # the tenant's folder, once it holds nothing
            except OSError:
                pass

    def take_dropped(self, tenant: str, name: str) -> int:
        with self._lock:
            return self.dropped.pop((tenant, name), 0)

    # -- reading -------------------------------------------------------------------------------------
    def has(self, tenant: str, name: str) -> bool:
        return (tenant, name) in self.logs

    def last(self, tenant: str, name: str) -> int:
        """The sequence number of the service's newest line (0: none yet)."""
        log = self.logs.get((tenant, name))
        return log.next_seq - 1 if log is not None else 0

    def read(self, tenant: str, name: str, after: int = -1, since: float = 0.0, tail: int = 0,
             max_lines: int = 1000, max_bytes: int = 1 << 20) -> Page:
        """Lines after sequence number `after` (-1: from the oldest kept), written at `since` or later (unix
        seconds; 0: any), at most `max_lines` and about `max_bytes`. With `tail`, only the newest `tail` lines
        that match are read (then after them, as usual, with `after`). `last` says where to resume."""
        self._dir(tenant, name)
        with self._lock:
            log = self.logs.get((tenant, name))
            segments = list(log.segments) if log is not None else []
            end = log.next_seq - 1 if log is not None else 0
        if not segments:
            return Page([], max(after, end))
        first_kept = segments[0].first
        skipped = max(0, first_kept - after - 1) if after >= 0 else 0
        if tail:
            after = max(after, self._tail_start(segments, since, tail, end) - 1)
        lines, size = [], 0
        for index, segment in enumerate(segments):
            following = segments[index + 1].first if index + 1 < len(segments) else end + 1
            if following - 1 <= after:
                continue  # everything in it was read already
            for row in self._rows(segment.path, after):
                if row["time"] < since:
                    continue
                lines.append(row)
                size += len(row["text"]) + 64
                if len(lines) >= max_lines or size >= max_bytes:
                    return Page(lines, row["n"], skipped)
        return Page(lines, max(after, lines[-1]["n"] if lines else after, end), skipped)

    def _tail_start(self, segments: list[Segment], since: float, tail: int, end: int) -> int:
        """The sequence number of the oldest of the newest `tail` lines written at `since` or later (past `end`
        when none is)."""
        numbers: list[int] = []
        for segment in reversed(segments):  # newest first: only as many segments as the tail needs are read
            numbers = [r["n"] for r in self._rows(segment.path) if r["time"] >= since] + numbers
            if len(numbers) >= tail:
                break
        return numbers[max(0, len(numbers) - tail)] if numbers else end + 1

    @staticmethod
    def _rows(path: Path, after: int = -1) -> list[dict]:
        """The segment's lines numbered after `after` (those before are skipped without being parsed)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []  # rotated away while being read
        return [row for raw in data.split(b"\n") if raw and number_of(raw) > after and (row := decode(raw)) is not None
                and row["n"] > after]


__all__ = ["STREAMS", "LogStore", "Page", "decode", "encode", "number_of"]
