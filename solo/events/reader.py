"""Reading the event history for notebooks and scripts (works while Solo runs or after it stopped)."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from solo.events.schema import EVENT_SCHEMA
from solo.events.wal import read_records, wal_files

SEGMENT_RE = re.compile(r"^segment-(\d{20})-(\d{20})\.parquet$")


def segment_files(directory: Path) -> list[Path]:
    """The immutable Parquet segments, oldest first (their names carry their id range)."""
    return sorted(p for p in Path(directory).glob("segment-*.parquet") if SEGMENT_RE.match(p.name))


def _range(path: Path) -> tuple[int, int]:
    match = SEGMENT_RE.match(path.name)
    return int(match.group(1)), int(match.group(2))


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


def read_events(data_dir: str | Path, *, tenant: str | None = None, type: str | None = None,
                subject: str | None = None, since: datetime | None = None, until: datetime | None = None,
                min_id: int | None = None, max_id: int | None = None, include_wal: bool = True) -> pa.Table:
    """All events under `data_dir` (or its events/ folder) matching the filters, ordered by id.

    Reads the immutable segments and, with `include_wal`, the events committed since the last roll,
    so a notebook sees the history up to the moment it asks, while Solo runs or after it stopped.
    """
    directory = events_dir(data_dir)
    files = segment_files(directory)
    if min_id is not None or max_id is not None:  # skip whole segments by their id range in the name
        files = [f for f in files if (min_id is None or _range(f)[1] >= min_id) and
                 (max_id is None or _range(f)[0] <= max_id)]
    expression = None
    for column, op, value in (("tenant", "__eq__", tenant), ("type", "__eq__", type),
                              ("subject", "__eq__", subject), ("time", "__ge__", since),
                              ("time", "__lt__", until), ("id", "__ge__", min_id), ("id", "__le__", max_id)):
        if value is not None:
            condition = getattr(ds.field(column), op)(pa.scalar(value, type=EVENT_SCHEMA.field(column).type))
            expression = condition if expression is None else expression & condition
    tables = []
    if files:  # row-group statistics let the scan skip what cannot match (segments are sorted)
        dataset = ds.dataset([str(f) for f in files], format="parquet", schema=EVENT_SCHEMA)
        tables.append(dataset.to_table(filter=expression))
    if include_wal:
        last_segment_id = max((_range(f)[1] for f in segment_files(directory)), default=0)
        wal = _wal_table(directory, last_segment_id)
        tables.append(wal.filter(expression) if expression is not None and wal.num_rows else wal)
    table = pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()
    return table.sort_by("id")


def events_duckdb(data_dir: str | Path, con=None):
    """A DuckDB connection with an `events` view over the whole history (segments and WAL).

        con = events_duckdb("~/.solo")
        con.sql("select tenant, type, count(*) from events group by all").df()
    """
    import duckdb  # optional: `pip install duckdb` (in the dev extras)

    con = con or duckdb.connect()
    directory = events_dir(data_dir)
    files = [str(f) for f in segment_files(directory)]
    last_segment_id = max((_range(f)[1] for f in segment_files(directory)), default=0)
    wal = _wal_table(directory, last_segment_id)
    con.register("solo_events_wal", wal)
    parts = ["select * from solo_events_wal"]
    if files:
        parts.insert(0, f"select * from read_parquet({files!r})")
    con.execute(f"create or replace temp view events as {' union all '.join(parts)}")
    return con
