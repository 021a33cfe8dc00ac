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

ROW_GROUP_ROWS = 16 * 1024  # small enough that tenant/type statistics skip most of a segment
SORT_KEYS = [("tenant", "ascending"), ("type", "ascending"), ("id", "ascending")]


class LogCorrupted(Exception):
    """The files on disk do not form a gap-free history (a bug or outside tampering)."""


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
        segments = segment_files(self.directory)
        expected = 1
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

    # -- writing -------------------------------------------------------------------------------
    def _batch(self, rows: list[dict], first_id: int) -> pa.RecordBatch:
        now = self.clock()
        columns = {name: [] for name in EVENT_SCHEMA.names}
        for offset, row in enumerate(rows):
            payload = row.get("payload")
            columns["id"].append(first_id + offset)
            columns["time"].append(_to_micros(row.get("time", now)))
            columns["tenant"].append(row["tenant"])
            columns["type"].append(row["type"])
            columns["subject"].append(row.get("subject", ""))
            columns["principal"].append(row.get("principal", ""))
            columns["causation_id"].append(row.get("causation_id"))
            columns["correlation_id"].append(row.get("correlation_id", ""))
            columns["payload"].append(payload if isinstance(payload, str) else
                                      json.dumps(payload or {}, sort_keys=True, default=str))
            columns["schema_version"].append(SCHEMA_VERSION)
        arrays = [pa.array(columns[f.name], type=f.type if f.name != "time" else pa.int64())
                  for f in EVENT_SCHEMA]
        arrays[1] = arrays[1].cast(EVENT_SCHEMA.field("time").type)
        return pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA)

    def append_many(self, groups: Iterable[list[dict]]) -> list[tuple[int, int]]:
        """Append several producers' rows with one fsync. Returns each group's (first, last) id."""
        batches, ranges = [], []
        next_id = self.last_id + 1
        for rows in groups:
            if not rows:
                ranges.append((next_id, next_id - 1))
                continue
            batches.append(self._batch(rows, next_id))
            ranges.append((next_id, next_id + len(rows) - 1))
            next_id += len(rows)
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
        final = self.directory / f"segment-{first:020d}-{last:020d}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(table.sort_by(SORT_KEYS), tmp, row_group_size=ROW_GROUP_ROWS, write_statistics=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(self.directory)
        for old in self.wal.rotate(last + 1):
            old.unlink()
        self._tail, self._tail_rows = [], 0
        return final

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
