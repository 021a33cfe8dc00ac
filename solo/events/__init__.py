"""Solo's event history: every operation as an immutable event in Parquet files.

    from solo.events import read_events
    table = read_events("~/.solo", tenant="acme", type="service.crashed")   # a pyarrow Table
"""
from solo.events.reader import read_events
from solo.events.schema import EVENT_SCHEMA, SCHEMA_VERSION

__all__ = ["EVENT_SCHEMA", "SCHEMA_VERSION", "read_events"]
