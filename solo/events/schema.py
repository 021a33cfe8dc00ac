"""The one definition of an event row, used by the writer, the reader and (later) the RPCs."""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

EVENT_SCHEMA = pa.schema([
    pa.field("id", pa.uint64(), nullable=False),
    pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("tenant", pa.string(), nullable=False),
    pa.field("type", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("principal", pa.string()),
    pa.field("causation_id", pa.uint64()),
    pa.field("correlation_id", pa.string()),
    pa.field("payload", pa.string()),      # JSON; never holds secrets or tokens
    pa.field("schema_version", pa.uint16(), nullable=False),
])
