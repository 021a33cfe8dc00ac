"""Reading the event history for notebooks and scripts (works while Solo runs or after it stopped)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from solo.events.schema import EVENT_SCHEMA
from solo.events.writer import segment_files


def events_dir(data_dir: str | Path) -> Path:
    path = Path(data_dir).expanduser()
    return path if path.name == "events" else path / "events"


def read_events(data_dir: str | Path, *, tenant: str | None = None, type: str | None = None,
                subject: str | None = None, since: datetime | None = None, until: datetime | None = None,
                min_id: int | None = None, max_id: int | None = None) -> pa.Table:
    """All events under `data_dir` (or its events/ folder) matching the filters, ordered by id."""
    files = segment_files(events_dir(data_dir))
    if not files:
        return EVENT_SCHEMA.empty_table()
    table = pa.concat_tables([pq.read_table(f, schema=EVENT_SCHEMA) for f in files])
    mask = None
    for column, op, value in (("tenant", pc.equal, tenant), ("type", pc.equal, type),
                              ("subject", pc.equal, subject), ("time", pc.greater_equal, since),
                              ("time", pc.less, until), ("id", pc.greater_equal, min_id),
                              ("id", pc.less_equal, max_id)):
        if value is not None:
            condition = op(table[column], pa.scalar(value, type=table.schema.field(column).type))
            mask = condition if mask is None else pc.and_(mask, condition)
    if mask is not None:
        table = table.filter(mask)
    return table.sort_by("id")
