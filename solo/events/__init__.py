"""Solo's event history: every operation as an immutable event in Parquet files.

    from solo.events import read_events
    table = read_events("~/.solo", tenant="acme", type="service.crashed")   # a pyarrow Table
    frame = table.to_pandas()                                                # pandas, if installed
    con = events_duckdb("~/.solo")                                           # DuckDB: a view `events`
    con.sql("select tenant, type, count(*) from events group by all").df()
"""
from solo.events.reader import events_duckdb, read_events
from solo.events.schema import EVENT_SCHEMA, SCHEMA_VERSION

__all__ = ["EVENT_SCHEMA", "SCHEMA_VERSION", "events_duckdb", "read_events"]
