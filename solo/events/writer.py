"""A simple event writer: buffered rows rolled into immutable Parquet segments.

Each flush writes `segment-<first id>-<last id>.parquet` under a temporary name, fsyncs it and
renames it into place, so a reader never sees a torn file. Ids continue from the highest id on
disk. (The durable, group-committed event log with a WAL replaces this in the event-log issue.)
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from solo.events.schema import EVENT_SCHEMA, SCHEMA_VERSION

SEGMENT_RE = re.compile(r"^segment-(\d{20})-(\d{20})\.parquet$")


def segment_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("segment-*.parquet") if SEGMENT_RE.match(p.name))


class EventWriter:
    def __init__(self, directory: Path, clock=time.time):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._lock = threading.Lock()
        self._rows: list[dict] = []
        files = segment_files(self.directory)
        self.last_id = int(SEGMENT_RE.match(files[-1].name).group(2)) if files else 0

    def append(self, tenant: str, type_: str, subject: str, payload: dict | None = None, *, principal: str = "",
               correlation_id: str = "", causation_id: int | None = None) -> int:
        with self._lock:
            self.last_id += 1
            self._rows.append({
                "id": self.last_id, "time": datetime.fromtimestamp(self.clock(), timezone.utc), "tenant": tenant,
                "type": type_, "subject": subject, "principal": principal, "causation_id": causation_id,
                "correlation_id": correlation_id, "payload": json.dumps(payload or {}, sort_keys=True, default=str),
                "schema_version": SCHEMA_VERSION})
            return self.last_id

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> Path | None:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return None
        table = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
        final = self.directory / f"segment-{rows[0]['id']:020d}-{rows[-1]['id']:020d}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final
