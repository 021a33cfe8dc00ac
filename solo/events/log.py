"""The event log: one sequencer of gap-free ids, a WAL for durability, Parquet segments for reading.

    log = EventLog(data_dir / "events")          # recovers: torn WAL tail cut, ids continue
    first, last = log.append([{"tenant": "acme", "type": "service.started", "subject": "kv"}])
    log.roll()                                   # committed events -> an immutable Parquet segment

Pure Python and files (no Ray): the event-log actor is a thin shell that batches concurrent
appends into one `append_many` (one fsync for all of them).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from solo.events import crypto
from solo.events.reader import read_events
from solo.events.schema import EVENT_SCHEMA, SCHEMA_VERSION
from solo.events.segments import INDEXES, covered, read_segment, segment_files, segment_range, write_segment
from solo.events.wal import WriteAheadLog, fsync_dir

_PAYLOAD = json.JSONEncoder(sort_keys=True, default=str, separators=(", ", ": "))
PRODUCER_SCHEMA = pa.schema([f for f in EVENT_SCHEMA if f.name not in ("id", "schema_version")])


def to_columns(rows: list[dict], clock: Callable[[], float] = time.time) -> pa.RecordBatch:
    """Producer rows as one Arrow batch of the event columns the producer sets (no id yet).

    Column by column: the per-row Python is the cost, so a bulk producer pays it in its own
    process (see EventLogHandle.append) and the sequencer only numbers and writes.
    """
    now_us = _to_micros(clock())
    encode = _PAYLOAD.encode
    times = [now_us if (t := row.get("time")) is None else _to_micros(t) for row in rows]
    columns = [
        pa.array(times, pa.int64()).cast(EVENT_SCHEMA.field("time").type),
        pa.array([row["tenant"] for row in rows], pa.string()),
        pa.array([row["type"] for row in rows], pa.string()),
        pa.array([row.get("subject", "") for row in rows], pa.string()),
        pa.array([row.get("principal", "") for row in rows], pa.string()),
        pa.array([row.get("causation_id") for row in rows], pa.uint64()),
        pa.array([row.get("correlation_id", "") for row in rows], pa.string()),
        pa.array([p if isinstance(p := row.get("payload"), str) else encode(p or {}) for row in rows], pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=PRODUCER_SCHEMA)


class LogCorrupted(Exception):
    """The files on disk do not form a gap-free history (a bug or outside tampering)."""


KEEP_TYPES = frozenset({"token.revoked"})  # never dropped by retention (see apply_retention)
MAX_TIME_US = 253_402_300_800 * 1_000_000  # the year 10000: no reader could turn a later time into a datetime


def check_group(group) -> None:
    """Refuse a producer's group before it can fail a shared group commit, or write a time no reader
    can read back (a segment's statistics are read as datetimes)."""
    if isinstance(group, (pa.Table, pa.RecordBatch)):
        missing = [name for name in ("tenant", "type") if name not in group.schema.names]
        if missing:
            raise ValueError(f"columnar events need the columns {missing}")
        if "time" in group.schema.names and group.num_rows:
            try:
                micros = group.column("time").cast(EVENT_SCHEMA.field("time").type).cast(pa.int64())
                low, high = pc.min_max(micros).values()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise ValueError(f"the time column is not a time ({exc})") from None
            if low.as_py() is not None and not (0 <= low.as_py() and high.as_py() < MAX_TIME_US):
                raise ValueError("event times must be between 1970 and the year 10000")
    elif not all(isinstance(row, dict) and "tenant" in row and "type" in row for row in group):
        raise ValueError("events need at least a tenant and a type")
    else:
        for row in group:
            if row.get("time") is not None and not _sane_time(row["time"]):
                raise ValueError(f"event times must be between 1970 and the year 10000, not {str(row['time'])[:40]!r}")


def _sane_time(value) -> bool:
    try:
        return 0 <= _to_micros(value) < MAX_TIME_US
    except (TypeError, ValueError, OverflowError):
        return False


def _cutoff(now_us: int, age_seconds: float | None) -> int:
    """Events older than this (microseconds) are past a retention of `age_seconds` (None: never)."""
    return -(2 ** 63) if age_seconds is None else now_us - int(age_seconds * 1_000_000)


def _to_micros(value) -> int:
    if value is None:
        return int(time.time() * 1_000_000)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000)
    return int(float(value) * 1_000_000)


@dataclass
class _Sealed:
    """Committed events taken out of the tail for a segment, and the WAL files that hold them."""
    batches: list[pa.RecordBatch]
    first: int
    last: int
    wal_files: list[Path]


class EventLog:
    """Thread-safe for one appending thread plus one maintenance thread (roll, compact, retention):
    appends never wait for a segment to be written, only for the moment the tail is sealed."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time, roll_rows: int = 100_000,
                 auto_roll: bool = True, key: crypto.EventKey | None = None, encrypt: bool = False):
        """`key` reads encrypted files (events/crypto.open_key finds or makes it); with `encrypt`, every
        new WAL record and segment (rolls, merges, retention rewrites) is encrypted with it."""
        if encrypt and key is None:
            raise ValueError("encrypt needs a key (solo.events.crypto.open_key)")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.roll_rows = roll_rows
        self.auto_roll = auto_roll  # roll inside append_many once roll_rows are committed (in-process use)
        if key is not None:
            crypto.register(self.directory, key)  # this process's readers of the directory use it
        self.write_key = key if encrypt else None
        self.wal = WriteAheadLog(self.directory, self.write_key)
        self._lock = threading.Lock()  # the tail, the sealed part and the WAL file
        self._tail: list[pa.RecordBatch] = []
        self._tail_rows = 0
        self._sealed: _Sealed | None = None
        self.last_id = 0
        self._recover()

    # -- recovery ------------------------------------------------------------------------------
    def _recover(self) -> None:
        for stale in self.directory.glob("*.tmp"):
            stale.unlink()  # a segment that was being written when the process died
        segments = self._drop_covered(segment_files(self.directory))
        expected = segment_range(segments[0])[0] if segments else 1  # retention may have dropped a prefix
        for path in segments:
            first, last = segment_range(path)
            if first != expected:
                raise LogCorrupted(f"segment {path.name} starts at {first}, expected {expected}")
            expected = last + 1
        self.last_id = expected - 1
        for batch in self.wal.recover():
            ids = batch.column(0).to_pylist()
            if not ids or ids[-1] <= self.last_id:
                continue  # already rolled into a segment before the crash
            keep = [i for i, value in enumerate(ids) if value > self.last_id]
            batch = batch.take(pa.array(keep)) if len(keep) != len(ids) else batch
            first = batch.column(0)[0].as_py()
            if first != self.last_id + 1:
                raise LogCorrupted(f"WAL continues at {first}, expected {self.last_id + 1}")
            self._tail.append(batch)
            self._tail_rows += batch.num_rows
            self.last_id = batch.column(0)[-1].as_py()
        self.wal.open(self.last_id + 1)

    @staticmethod
    def _drop_covered(segments: list[Path]) -> list[Path]:
        """A compaction that died after writing its merged segment leaves the parts behind: drop them."""
        parts = covered(segments)
        for path in parts:
            path.unlink()
        return [p for p in segments if p not in parts]

    # -- writing -------------------------------------------------------------------------------
    def _batch(self, rows: list[dict], first_id: int) -> pa.RecordBatch:
        """One Arrow batch from producer rows; `cause_index` points at an event of the same group."""
        batch = to_columns(rows, self.clock)
        if any("cause_index" in row for row in rows):
            causation = pa.array([first_id + row["cause_index"] if "cause_index" in row else row.get("causation_id")
                                  for row in rows], pa.uint64())
            batch = batch.set_column(batch.schema.get_field_index("causation_id"), "causation_id", causation)
        return self._columnar(batch, first_id)

    def _columnar(self, table: pa.Table | pa.RecordBatch, first_id: int) -> pa.RecordBatch:
        """One Arrow batch from a producer's columns (tenant and type required; payload as JSON text)."""
        n = table.num_rows
        check_group(table)

        def column(name: str, default):
            if name in table.schema.names:
                return table.column(name).cast(EVENT_SCHEMA.field(name).type)
            return pa.array([default] * n, EVENT_SCHEMA.field(name).type)

        time_type = EVENT_SCHEMA.field("time").type
        columns = {
            "id": pa.array(range(first_id, first_id + n), pa.uint64()),
            "time": column("time", None) if "time" in table.schema.names else
            pa.array([_to_micros(self.clock())] * n, pa.int64()).cast(time_type),
            "tenant": column("tenant", ""), "type": column("type", ""), "subject": column("subject", ""),
            "principal": column("principal", ""), "causation_id": column("causation_id", None),
            "correlation_id": column("correlation_id", ""), "payload": column("payload", "{}"),
            "schema_version": pa.array([SCHEMA_VERSION] * n, pa.uint16()),
        }
        arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns.values()]
        return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)

    def append_many(self, groups: Iterable[list[dict] | pa.Table | pa.RecordBatch]) -> list[tuple[int, int]]:
        """Append several producers' events with one fsync. Returns each group's (first, last) id.

        A group is a list of row dicts, or (cheaper for bulk producers) an Arrow table/batch with
        the event columns; ids, time and schema version are filled in here either way.
        """
        batches, ranges = [], []
        next_id = self.last_id + 1
        for rows in groups:
            count = rows.num_rows if isinstance(rows, (pa.Table, pa.RecordBatch)) else len(rows)
            if not count:
                ranges.append((next_id, next_id - 1))
                continue
            batches.append(self._columnar(rows, next_id) if isinstance(rows, (pa.Table, pa.RecordBatch))
                           else self._batch(rows, next_id))
            ranges.append((next_id, next_id + count - 1))
            next_id += count
        if batches:
            with self._lock:
                self.wal.append(batches)  # durable from here on
                self._tail.extend(batches)
                self._tail_rows += sum(b.num_rows for b in batches)
                self.last_id = next_id - 1
            if self.auto_roll and self.should_roll:
                self.roll()
        return ranges

    def append(self, rows: list[dict]) -> tuple[int, int]:
        return self.append_many([rows])[0]

    @property
    def should_roll(self) -> bool:
        return self._tail_rows >= self.roll_rows

    def roll(self) -> Path | None:
        """Write the committed tail as an immutable Parquet segment, then drop the WAL behind it."""
        self.seal()
        return self.flush()

    def seal(self) -> bool:
        """Take the committed tail for a segment: new appends go to a new WAL file (cheap, under the
        lock). False if there is nothing to seal or the previous sealed part is not written yet."""
        with self._lock:
            if not self._tail_rows or self._sealed is not None:
                return False
            first, last = self._tail[0].column(0)[0].as_py(), self.last_id
            older = self.wal.rotate(last + 1)
            self._sealed = _Sealed(self._tail, first, last, older)
            self._tail, self._tail_rows = [], 0
            return True

    def flush(self) -> Path | None:
        """Write the sealed part as a segment (outside the lock: appends go on meanwhile), then
        delete its WAL files. A crash before the rename leaves the WAL; after it, recovery skips
        the WAL records the segment already holds."""
        sealed = self._sealed
        if sealed is None:
            return None
        final = write_segment(self.directory, pa.Table.from_batches(sealed.batches, schema=EVENT_SCHEMA),
                              sealed.first, sealed.last, self.write_key)
        with self._lock:
            self._sealed = None
            for old in sealed.wal_files:
                old.unlink(missing_ok=True)
        return final

    def compact(self, small_rows: int = 500_000, target_rows: int = 1_000_000, min_parts: int = 8) -> list[Path]:
        """Merge runs of at least `min_parts` adjacent small segments into one (written, fsynced,
        renamed, then the parts deleted: a crash in between leaves parts that recovery drops).
        Waiting for several parts keeps each event from being rewritten more than a few times."""
        merged: list[Path] = []
        run: list[tuple[Path, int]] = []

        def flush_run() -> None:
            if len(run) >= max(2, min_parts):
                merged.append(self._merge([p for p, _ in run]))
            run.clear()

        for path in segment_files(self.directory):
            rows = INDEXES.get(path).num_rows
            if rows >= small_rows or sum(n for _, n in run) + rows > target_rows:
                flush_run()
                if rows >= small_rows:
                    continue
            run.append((path, rows))
        flush_run()
        return merged

    def _merge(self, parts: list[Path]) -> Path:
        table = pa.concat_tables([read_segment(p) for p in parts])
        first, last = segment_range(parts[0])[0], segment_range(parts[-1])[1]
        final = write_segment(self.directory, table, first, last, self.write_key)
        for part in parts:
            part.unlink()
        fsync_dir(self.directory)
        return final

    def apply_retention(self, max_age_seconds: float | None = None, max_bytes: int | None = None,
                        tenant_ages: dict[str, float | None] | None = None,
                        keep_after_id: int | None = None) -> list[Path]:
        """Drop events past their retention, from the oldest end only, so every tenant's retained
        events stay gap-free (and the segment id ranges stay contiguous).

        `max_age_seconds` applies to every tenant except those in `tenant_ages` (None there: keep
        forever). A segment all of whose events are expired is deleted; one with some expired is
        rewritten without them (same id range). `max_bytes` then drops whole oldest segments. The
        newest segment, and any segment holding ids after `keep_after_id` (what the registry has
        not checkpointed yet), are never touched. Returns the segments deleted or rewritten.

        `token.revoked` events (KEEP_TYPES) are never dropped, by age or by size: a segment past its
        retention is rewritten with only them, so a revoked token can never become valid again when
        the gateways load the revocations from the log.
        """
        touched: list[Path] = []
        segments = segment_files(self.directory)[:-1]  # the newest carries where the ids go on
        if keep_after_id is not None:
            segments = [p for p in segments if segment_range(p)[1] <= keep_after_id]
        tenant_ages = tenant_ages or {}
        if max_age_seconds is not None or any(age is not None for age in tenant_ages.values()):
            for path in segments:
                expired = self._expired(path, max_age_seconds, tenant_ages)
                if expired is None:
                    break  # nothing expired here: newer segments hold newer events
                if self._drop_rows(path, expired):
                    touched.append(path)
        if max_bytes is not None:
            segments = [p for p in segments if p.exists()]
            sizes = {p: p.stat().st_size for p in segment_files(self.directory)}
            total = sum(sizes.values())
            for path in segments:
                if total <= max_bytes:
                    break
                if self._drop_rows(path, None):
                    touched.append(path)
                # what is left of it (the kept types) counts, but is never dropped
                total -= sizes[path] - (path.stat().st_size if path.exists() else 0)
        if touched:
            fsync_dir(self.directory)
        return touched

    def _drop_rows(self, path: Path, expired: pa.ChunkedArray | None) -> bool:
        """Drop the `expired` rows (None: all) of a segment, except those of the kept types: the file is
        deleted, or rewritten under the same name (same id range) without them. False if nothing went."""
        types = read_segment(path, ["type"]).column("type")
        keep = pc.is_in(types, value_set=pa.array(sorted(KEEP_TYPES), types.type))
        if expired is not None:
            keep = pc.or_(keep, pc.invert(expired))
        if not pc.any(keep).as_py():
            path.unlink()
        elif pc.all(keep).as_py():
            return False
        else:
            first, last = segment_range(path)
            write_segment(self.directory, read_segment(path).filter(keep), first, last,  # replaces it atomically
                          self.write_key)
        return True

    def _expired(self, path: Path, default_age: float | None, tenant_ages: dict) -> pa.ChunkedArray | None:
        """Which rows of the segment are past their tenant's retention (None if none is)."""
        now_us = int(self.clock() * 1_000_000)
        ages = [a for a in (default_age, *tenant_ages.values()) if a is not None]
        if not ages or min(t[0] for t in INDEXES.get(path).times) >= _cutoff(now_us, min(ages)):
            return None  # even the shortest retention keeps every event here (statistics only)
        table = read_segment(path, ["tenant", "time"])
        tenants = pc.unique(table.column("tenant"))
        cutoffs = pa.array([_cutoff(now_us, tenant_ages[t] if t in tenant_ages else default_age)
                            for t in tenants.to_pylist()], pa.int64())
        per_row = pc.take(cutoffs, pc.index_in(table.column("tenant"), value_set=tenants))
        expired = pc.less(table.column("time").cast(pa.int64()), per_row)
        return expired if pc.any(expired).as_py() else None

    def close(self) -> None:
        self.flush()  # a part sealed earlier, then the rest
        self.roll()
        self.wal.close()

    # -- reading -------------------------------------------------------------------------------
    def _memory(self) -> list[pa.RecordBatch]:
        """Committed events not yet in a segment (sealed, then tail), oldest first."""
        with self._lock:
            return (self._sealed.batches if self._sealed else []) + self._tail

    def tail_table(self) -> pa.Table:
        return pa.Table.from_batches(self._memory(), schema=EVENT_SCHEMA)

    def since(self, after_id: int, limit: int = 10_000) -> pa.Table:
        """Committed events with id > after_id (oldest first), at most `limit`: what Watch catches up on.

        The in-memory part is taken before the files are listed, so a segment written meanwhile is
        either seen in both (duplicates dropped by id) or in the files; never in neither.
        """
        memory = pa.Table.from_batches(self._memory(), schema=EVENT_SCHEMA)
        first_in_memory = memory.column("id")[0].as_py() if memory.num_rows else self.last_id + 1
        newest = after_id
        parts = []
        if after_id + 1 < first_in_memory:  # a catch-up: older events are in segments
            files = read_events(self.directory, min_id=after_id + 1, max_id=after_id + limit, include_wal=False)
            if files.num_rows:
                parts.append(files)
                newest = files.column("id")[-1].as_py()
        parts.append(memory.filter(pc.greater(memory.column("id"), newest)))
        return pa.concat_tables(parts).slice(0, limit)
