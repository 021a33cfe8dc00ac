"""Parquet segments: how they are named, written and pruned.

A segment holds the events with ids first..last (its name says which), sorted by (tenant, type, id)
in row groups of ROW_GROUP_ROWS. Because of the sort, each row group covers one range of
(tenant, type) keys; the writer records every row group's first and last key in the file's
metadata, so a reader asking for one tenant (and type) reads only the row groups that can hold
it, not every group whose min/max statistics happen to straddle it.

Readers keep each segment's parsed index in a small cache keyed by path, size and mtime:
segments are immutable (a retention rewrite gives a new mtime), so a repeated query does not
parse footers again.

With `[events] encrypt`, a segment is written with Parquet modular encryption (events/crypto.py): the
footer (statistics and the row-group keys too) and every column. Readers take the key of the
directory (crypto.key_for) for such a file; a plaintext segment is read as before, so a directory
holding both kinds reads whole.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from solo.events import crypto
from solo.events.schema import EVENT_SCHEMA
from solo.events.wal import fsync_dir

ROW_GROUP_ROWS = 4096  # small enough that a tenant/type query reads little more than it needs (bench/events.py)
SORT_KEYS = [("tenant", "ascending"), ("type", "ascending"), ("id", "ascending")]
KEYS_METADATA = b"solo.row_group_keys"  # JSON: [[first tenant, first type, last tenant, last type], ...]
SEGMENT_RE = re.compile(r"^segment-(\d{20})-(\d{20})\.parquet$")
# high-cardinality columns gain nothing from a dictionary (every value differs) and decode slower with one
DICTIONARY_COLUMNS = ["tenant", "type", "subject", "principal"]


def segment_files(directory: Path) -> list[Path]:
    """The immutable Parquet segments, oldest first (their names carry their id range)."""
    return sorted(p for p in Path(directory).glob("segment-*.parquet") if SEGMENT_RE.match(p.name))


def segment_range(path: Path) -> tuple[int, int]:
    match = SEGMENT_RE.match(path.name)
    return int(match.group(1)), int(match.group(2))


def covered(segments: list[Path]) -> set[Path]:
    """Segments whose ids another listed segment also holds: the parts of a merge whose merged
    segment is already written (a reader skips them; recovery deletes them)."""
    out: set[Path] = set()
    widest_last = 0
    for path in sorted(segments, key=lambda p: (segment_range(p)[0], -segment_range(p)[1])):
        if segment_range(path)[1] <= widest_last:
            out.add(path)
        else:
            widest_last = segment_range(path)[1]
    return out


def segment_name(first: int, last: int) -> str:
    return f"segment-{first:020d}-{last:020d}.parquet"


def write_segment(directory: Path, table: pa.Table, first: int, last: int, key: crypto.EventKey | None = None) -> Path:
    """Sort `table`, write it under a temporary name, fsync, rename: a reader never sees half a segment.
    With `key`, the file is encrypted (footer and columns)."""
    table = table.sort_by(SORT_KEYS)
    keys = []
    tenants, types = table.column("tenant"), table.column("type")
    for start in range(0, table.num_rows, ROW_GROUP_ROWS):
        end = min(start + ROW_GROUP_ROWS, table.num_rows) - 1
        keys.append([tenants[start].as_py(), types[start].as_py(), tenants[end].as_py(), types[end].as_py()])
    table = table.replace_schema_metadata({KEYS_METADATA: json.dumps(keys).encode()})
    final = Path(directory) / segment_name(first, last)
    tmp = final.with_name(final.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, write_statistics=True,
                   use_dictionary=DICTIONARY_COLUMNS,
                   encryption_properties=key.encryption_properties() if key is not None else None)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


@dataclass(frozen=True)
class SegmentIndex:
    metadata: pq.FileMetaData
    keys: list[tuple[str, str, str, str]] | None  # None: written before row-group keys were recorded
    ids: list[tuple[int, int]]
    times: list[tuple[int, int]]                  # microseconds since the epoch
    tenants: list[tuple[str, str]]
    types: list[tuple[str, str]]
    decryption: object = None                     # pyarrow's decryption properties for an encrypted segment

    @property
    def num_rows(self) -> int:
        return self.metadata.num_rows

    def newest_time_us(self) -> int:
        return max(t[1] for t in self.times) if self.times else 0

    def row_groups(self, *, tenant: str | None = None, types: list[str] | None = None,
                   min_id: int | None = None, max_id: int | None = None,
                   since_us: int | None = None, until_us: int | None = None) -> list[int]:
        """The row groups that can hold a matching event (a superset; the caller still filters rows)."""
        chosen = []
        for i in range(len(self.ids)):
            if min_id is not None and self.ids[i][1] < min_id or max_id is not None and self.ids[i][0] > max_id:
                continue
            if since_us is not None and self.times[i][1] < since_us or \
                    until_us is not None and self.times[i][0] >= until_us:
                continue
            if tenant is not None and not self._may_hold(i, tenant, types):
                continue
            if tenant is None and types and not any(self.types[i][0] <= y <= self.types[i][1] for y in types):
                continue
            chosen.append(i)
        return chosen

    def _may_hold(self, i: int, tenant: str, types: list[str] | None) -> bool:
        if self.keys is not None:  # exact for sorted row groups: (first key) <= (tenant, type) <= (last key)
            t0, y0, t1, y1 = self.keys[i]
            if not types:
                return t0 <= tenant <= t1
            return any((t0, y0) <= (tenant, y) <= (t1, y1) for y in types)
        lo, hi = self.tenants[i]
        if not lo <= tenant <= hi:
            return False
        return not types or lo != hi or any(self.types[i][0] <= y <= self.types[i][1] for y in types)


def _load(path: Path) -> SegmentIndex:
    decryption = crypto.decryption_for(path)
    meta = pq.read_metadata(path, decryption_properties=decryption)
    names = meta.schema.names
    columns = {name: names.index(name) for name in ("id", "time", "tenant", "type")}

    def stats(name: str, convert=lambda v: v, raw: bool = False) -> list[tuple]:
        out = []
        for i in range(meta.num_row_groups):
            s = meta.row_group(i).column(columns[name]).statistics
            out.append((convert(s.min_raw), convert(s.max_raw)) if raw else (convert(s.min), convert(s.max)))
        return out

    raw = (meta.metadata or {}).get(KEYS_METADATA)
    keys = [tuple(k) for k in json.loads(raw)] if raw else None
    if keys is not None and len(keys) != meta.num_row_groups:
        keys = None
    return SegmentIndex(meta, keys, stats("id", int), stats("time", int, raw=True), stats("tenant"), stats("type"),
                        decryption)


class _IndexCache:
    """Parsed segment footers, least recently used out first (a few KB each)."""

    def __init__(self, size: int = 2048):
        self.size = size
        self._entries: OrderedDict[str, tuple[tuple[int, int], SegmentIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> SegmentIndex:
        st = path.stat()
        stamp, key = (st.st_size, st.st_mtime_ns), str(path)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(key)
                return entry[1]
        index = _load(path)
        with self._lock:
            self._entries[key] = (stamp, index)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return index


INDEXES = _IndexCache()


def read_row_groups(path: Path, index: SegmentIndex, groups: list[int]) -> pa.Table:
    """The chosen row groups of one segment, with Solo's schema."""
    table = pq.ParquetFile(path, metadata=index.metadata, decryption_properties=index.decryption) \
        .read_row_groups(groups).replace_schema_metadata(None)
    return table if table.schema == EVENT_SCHEMA else table.cast(EVENT_SCHEMA)


def read_segment(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A whole segment (or some of its columns), decrypted if it is encrypted."""
    decryption = crypto.decryption_for(path)
    if columns is not None:
        return pq.read_table(path, columns=columns, decryption_properties=decryption)
    return pq.read_table(path, schema=EVENT_SCHEMA, decryption_properties=decryption).replace_schema_metadata(None)
