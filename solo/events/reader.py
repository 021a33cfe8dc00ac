"""Reading the event history for notebooks and scripts (works while Solo runs or after it stopped).

Encrypted files ([events] encrypt) are read with the key of the directory (events/crypto.py: the
key file named at start, else `<data-dir>/keys/events.key`); `key_file=` names another one.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from solo.events import crypto
from solo.events.schema import EVENT_SCHEMA
from solo.events.segments import INDEXES, covered, read_row_groups, read_segment, segment_files, segment_range
from solo.events.wal import read_records, wal_files


def events_dir(data_dir: str | Path) -> Path:
    """Accept a Solo data directory or the events directory itself."""
    path = Path(data_dir).expanduser()
    if path.name == "events" or any(path.glob("segment-*.parquet")) or any(path.glob("wal-*.log")):
        return path
    return path / "events"


def _wal_table(directory: Path, after_id: int) -> pa.Table:
    """Committed events still only in the WAL (read-only: a torn tail is ignored, not truncated)."""
    batches = []
    for path in wal_files(directory):
        batches.extend(b for b in read_records(path)[0] if b.num_rows and b.column(0)[-1].as_py() > after_id)
    table = pa.Table.from_batches(batches, schema=EVENT_SCHEMA)
    return table.filter(pc.greater(table["id"], after_id)) if table.num_rows else table


def read_events(data_dir: str | Path, *, tenant: str | None = None, type: str | list[str] | None = None,
                subject: str | None = None, since: datetime | None = None, until: datetime | None = None,
                min_id: int | None = None, max_id: int | None = None, include_wal: bool = True,
                key_file: str | Path | None = None) -> pa.Table:
    """All events under `data_dir` (or its events/ folder) matching the filters, ordered by id.

    `type` is one type or a list of them. Reads the immutable segments (only the row groups that
    can match: see segments.py) and, with `include_wal`, the events committed since the last roll,
    so a notebook sees the history up to the moment it asks, while Solo runs or after it stopped.
    `key_file`: the events key, if the files are encrypted and the key is not where Solo keeps it.
    """
    directory = events_dir(data_dir)
    if key_file is not None:
        crypto.use_key_file(directory, key_file)
    types = [type] if isinstance(type, str) else list(type) if type else None
    expression = _expression(tenant, types, subject, since, until, min_id, max_id)
    prune = {"tenant": tenant, "types": types, "min_id": min_id, "max_id": max_id,
             "since_us": _micros(since), "until_us": _micros(until)}
    for _ in range(20):
        try:
            # the WAL first, then the segments: a roll finishing in between leaves its events in both
            # (duplicates dropped by id), never in neither
            wal = _wal_table(directory, 0) if include_wal else None
            tables, last_segment_id = _read_segments(directory, prune, expression)
            break
        except FileNotFoundError:
            continue  # a roll or a merge replaced files while we read: read again
    else:
        raise RuntimeError(f"the event files in {directory} kept changing while being read")
    if wal is not None and wal.num_rows:
        wal = wal.filter(pc.greater(wal["id"], last_segment_id))
        tables.append(wal.filter(expression) if wal.num_rows else wal)
    table = pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()
    return table.sort_by("id")


def _read_segments(directory: Path, prune: dict, expression) -> tuple[list[pa.Table], int]:
    tables, last_segment_id = [], 0
    min_id, max_id = prune["min_id"], prune["max_id"]
    listed = segment_files(directory)
    merged_parts = covered(listed)  # a merge in progress: its merged segment holds these ids too
    for path in listed:
        if path in merged_parts:
            continue
        first, last = segment_range(path)
        last_segment_id = max(last_segment_id, last)
        if (min_id is not None and last < min_id) or (max_id is not None and first > max_id):
            continue  # the name says the whole segment is outside the id range
        index = INDEXES.get(path)
        groups = index.row_groups(**prune)
        if groups:
            tables.append(read_row_groups(path, index, groups).filter(expression))
    return tables, last_segment_id


def _micros(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1_000_000)


def _expression(tenant, types, subject, since, until, min_id, max_id) -> ds.Expression:
    expression = ds.scalar(True)
    for column, op, value in (("tenant", "__eq__", tenant), ("subject", "__eq__", subject),
                              ("time", "__ge__", since), ("time", "__lt__", until), ("id", "__ge__", min_id),
                              ("id", "__le__", max_id)):
        if value is not None:
            expression &= getattr(ds.field(column), op)(pa.scalar(value, type=EVENT_SCHEMA.field(column).type))
    if types:
        expression &= ds.field("type").isin(pa.array(types, pa.string()))
    return expression


def events_duckdb(data_dir: str | Path, con=None, key_file: str | Path | None = None):
    """A DuckDB connection with an `events` view over the whole history (segments and WAL).

        con = events_duckdb("~/.solo")
        con.sql("select tenant, type, count(*) from events group by all").df()

    DuckDB reads plaintext segments itself (read_parquet). It cannot open pyarrow's encrypted
    segments (their data keys are wrapped by Solo's key), so those are decrypted here and handed to
    DuckDB as one Arrow table, in memory: with encryption on, the view costs the whole history's
    memory; filter first with read_events() for a large one.
    """
    import duckdb  # optional: `pip install duckdb` (in the dev extras)

    con = con or duckdb.connect()
    directory = events_dir(data_dir)
    if key_file is not None:
        crypto.use_key_file(directory, key_file)
    for _ in range(20):
        try:
            wal = _wal_table(directory, 0)  # before listing segments: a roll in between duplicates, never drops
            listed = segment_files(directory)
            current = [f for f in listed if f not in covered(listed)]
            sealed = [f for f in current if crypto.parquet_encrypted(f)]
            opened = pa.concat_tables([read_segment(f) for f in sealed]) if sealed else EVENT_SCHEMA.empty_table()
            break
        except FileNotFoundError:
            continue  # a roll or a merge replaced files while we read: read again
    else:
        raise RuntimeError(f"the event files in {directory} kept changing while being read")
    files = [str(f) for f in current if f not in sealed]
    last_segment_id = max((segment_range(f)[1] for f in current), default=0)
    wal = wal.filter(pc.greater(wal["id"], last_segment_id)) if wal.num_rows else wal
    con.register("solo_events_wal", pa.concat_tables([opened, wal]))
    parts = ["select * from solo_events_wal"]
    if files:
        parts.insert(0, f"select * from read_parquet({files!r})")
    con.execute(f"create or replace temp view events as {' union all '.join(parts)}")
    return con
