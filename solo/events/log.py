"""The event log: one sequencer of gap-free ids, a WAL for durability, Parquet segments for reading.

    log = EventLog(data_dir / "events")          # recovers: torn WAL tail cut, ids continue
    first, last = log.append([{"tenant": "acme", "type": "service.started", "subject": "kv"}])
    log.roll()                                   # committed events -> an immutable Parquet segment

Pure Python and files (no Ray): the event-log actor is a thin shell that batches concurrent
appends into one `append_many` (one fsync for all of them).
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from solo.events.reader import _range as segment_range
from solo.events.reader import read_events, segment_files
from solo.events.schema import EVENT_SCHEMA, SCHEMA_VERSION
from solo.events.wal import WriteAheadLog, fsync_dir

_PAYLOAD = json.JSONEncoder(sort_keys=True, default=str, separators=(", ", ": "))
ROW_GROUP_ROWS = 4096  # small enough that tenant/type statistics skip most of a segment (bench/events.py)
SORT_KEYS = [("tenant", "ascending"), ("type", "ascending"), ("id", "ascending")]


class LogCorrupted(Exception):
    """The files on disk do not form a gap-free history (a bug or outside tampering)."""


def check_group(group) -> None:
    """Refuse a producer's group before it can fail a shared group commit."""
    if isinstance(group, (pa.Table, pa.RecordBatch)):
        missing = [name for name in ("tenant", "type") if name not in group.schema.names]
        if missing:
            raise ValueError(f"columnar events need the columns {missing}")
    elif not all(isinstance(row, dict) and "tenant" in row and "type" in row for row in group):
        raise ValueError("events need at least a tenant and a type")


def _newest_time(path: Path) -> float:
    """The latest event time in a segment, from its statistics (no data read)."""
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("time")
    newest = max(meta.row_group(i).column(column).statistics.max for i in range(meta.num_row_groups))
    return newest.timestamp() if hasattr(newest, "timestamp") else float(newest) / 1e6


def _to_micros(value) -> int:
    if value is None:
        return int(time.time() * 1_000_000)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000)
    return int(float(value) * 1_000_000)


class EventLog:
    def __init__(self, directory: Path, clock: Callable[[], float] = time.time, roll_rows: int = 100_000):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.roll_rows = roll_rows
        self.wal = WriteAheadLog(self.directory)
        self._tail: list[pa.RecordBatch] = []
        self._tail_rows = 0
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
        kept: list[Path] = []
        for path in sorted(segments, key=lambda p: (segment_range(p)[0], -segment_range(p)[1])):
            if kept and segment_range(path)[1] <= segment_range(kept[-1])[1]:
                path.unlink()
                continue
            kept.append(path)
        return kept

    # -- writing -------------------------------------------------------------------------------
    def _batch(self, rows: list[dict], first_id: int) -> pa.RecordBatch:
        """One Arrow batch from producer rows (column by column: the per-row Python is the cost)."""
        now_us = _to_micros(self.clock())
        encode = _PAYLOAD.encode
        times = [now_us if (t := row.get("time")) is None else _to_micros(t) for row in rows]
        columns = {
            "id": pa.array(range(first_id, first_id + len(rows)), pa.uint64()),
            "time": pa.array(times, pa.int64()).cast(EVENT_SCHEMA.field("time").type),
            "tenant": pa.array([row["tenant"] for row in rows], pa.string()),
            "type": pa.array([row["type"] for row in rows], pa.string()),
            "subject": pa.array([row.get("subject", "") for row in rows], pa.string()),
            "principal": pa.array([row.get("principal", "") for row in rows], pa.string()),
            "causation_id": pa.array([first_id + row["cause_index"] if "cause_index" in row
                                      else row.get("causation_id") for row in rows], pa.uint64()),
            "correlation_id": pa.array([row.get("correlation_id", "") for row in rows], pa.string()),
            "payload": pa.array([p if isinstance(p := row.get("payload"), str) else encode(p or {})
                                 for row in rows], pa.string()),
            "schema_version": pa.array([SCHEMA_VERSION] * len(rows), pa.uint16()),
        }
        return pa.RecordBatch.from_arrays([columns[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)

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
            self.wal.append(batches)  # durable from here on
            self._tail.extend(batches)
            self._tail_rows += sum(b.num_rows for b in batches)
            self.last_id = next_id - 1
            if self._tail_rows >= self.roll_rows:
                self.roll()
        return ranges

    def append(self, rows: list[dict]) -> tuple[int, int]:
        return self.append_many([rows])[0]

    def roll(self) -> Path | None:
        """Write the committed tail as an immutable Parquet segment, then drop the WAL behind it."""
        if not self._tail_rows:
            return None
        table = pa.Table.from_batches(self._tail, schema=EVENT_SCHEMA)
        first, last = table.column("id")[0].as_py(), table.column("id")[-1].as_py()
        final = self._write_segment(table, first, last)
        for old in self.wal.rotate(last + 1):
            old.unlink()
        self._tail, self._tail_rows = [], 0
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
            rows = pq.ParquetFile(path).metadata.num_rows
            if rows >= small_rows or sum(n for _, n in run) + rows > target_rows:
                flush_run()
                if rows >= small_rows:
                    continue
            run.append((path, rows))
        flush_run()
        return merged

    def _merge(self, parts: list[Path]) -> Path:
        table = pa.concat_tables([pq.read_table(p, schema=EVENT_SCHEMA) for p in parts])
        first, last = segment_range(parts[0])[0], segment_range(parts[-1])[1]
        final = self._write_segment(table, first, last)
        for part in parts:
            part.unlink()
        fsync_dir(self.directory)
        return final

    def _write_segment(self, table: pa.Table, first: int, last: int) -> Path:
        final = self.directory / f"segment-{first:020d}-{last:020d}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(table.sort_by(SORT_KEYS), tmp, row_group_size=ROW_GROUP_ROWS, write_statistics=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(self.directory)
        return final

    def apply_retention(self, max_age_seconds: float | None = None, max_bytes: int | None = None) -> list[Path]:
        """Drop whole segments from the oldest end only, so the retained ids stay gap-free."""
        dropped: list[Path] = []
        segments = segment_files(self.directory)
        now = self.clock()
        while len(segments) > 1:  # the newest segment stays: it carries where the ids go on
            oldest = segments[0]
            too_old = max_age_seconds is not None and _newest_time(oldest) < now - max_age_seconds
            too_big = max_bytes is not None and sum(p.stat().st_size for p in segments) > max_bytes
            if not (too_old or too_big):
                break
            oldest.unlink()
            dropped.append(oldest)
            segments = segments[1:]
        if dropped:
            fsync_dir(self.directory)
        return dropped

    def close(self) -> None:
        self.roll()
        self.wal.close()

    # -- reading -------------------------------------------------------------------------------
    def tail_table(self) -> pa.Table:
        return pa.Table.from_batches(self._tail, schema=EVENT_SCHEMA)

    def since(self, after_id: int, limit: int = 10_000) -> pa.Table:
        """Committed events with id > after_id (oldest first), at most `limit`: what Watch catches up on."""
        table = read_events(self.directory, min_id=after_id + 1, include_wal=False)
        table = pa.concat_tables([table, self.tail_table().filter(pc.greater(self.tail_table()["id"], after_id))])
        return table.sort_by("id").slice(0, limit)
