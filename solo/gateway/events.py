"""Event queries and Watch for the gateway: tenant scoping, filtering, conversion to proto."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from solo._proto import solo_pb2 as pb
from solo.core.spec import validate_name
from solo.errors import InvalidRequest, PermissionDenied
from solo.events.reader import read_events
from solo.security.tokens import Principal

MAX_PAGE = 10_000
DEFAULT_PAGE = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# since_us/until_us: the instants a datetime holds, 0001-01-01 to 9999-12-31 (UTC), in microseconds
MIN_TIME_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_TIME_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
# after_id past every id the log can reach (ids count up from 1) means "nothing yet": clamped, so that
# after_id + 1 and after_id + limit stay within the uint64 id column
MAX_AFTER_ID = 2**63


class EventFeed(Protocol):
    async def since(self, after_id: int, limit: int, wait_seconds: float) -> pa.Table: ...

    async def status(self) -> dict: ...


@dataclass(frozen=True)
class Scope:
    """A filter after authorization: `tenant` is None only for an operator asking for everyone."""

    tenant: str | None
    types: tuple[str, ...]
    subject: str
    since: datetime | None
    until: datetime | None
    after_id: int


def _time(micros: int, field: str) -> datetime | None:
    """since_us/until_us as a UTC datetime (0: no bound); INVALID_ARGUMENT outside the calendar."""
    if not micros:
        return None
    if not MIN_TIME_US <= micros <= MAX_TIME_US:
        raise InvalidRequest(f"{field} {micros} is outside the calendar: it counts microseconds since 1970-01-01 UTC "
                             f"and must be between {MIN_TIME_US} (year 1) and {MAX_TIME_US} (year 9999), or 0 for "
                             "no bound; e.g. int(time.time() * 1_000_000) is now")
    return EPOCH + timedelta(microseconds=micros)


def scope(principal: Principal, flt: pb.EventFilter) -> Scope:
    if flt.tenant and flt.tenant != principal.tenant and not principal.operator:
        # the same answer whether or not that tenant exists
        raise PermissionDenied("a tenant can only read its own events; leave the tenant filter empty")
    if flt.tenant:
        validate_name(flt.tenant, "tenant name")
    since, until = _time(flt.since_us, "since_us"), _time(flt.until_us, "until_us")
    if since is not None and until is not None and until <= since:
        raise InvalidRequest("until must be later than since")
    tenant = flt.tenant or (None if principal.operator else principal.tenant)
    return Scope(tenant, tuple(flt.types), flt.subject, since, until, min(flt.after_id, MAX_AFTER_ID))


def page_size(limit: int) -> int:
    if limit > MAX_PAGE:
        raise InvalidRequest(f"limit {limit} is over the page maximum of {MAX_PAGE}; page with after_id")
    return limit or DEFAULT_PAGE


def select(table: pa.Table, s: Scope) -> pa.Table:
    """The rows of `table` that `s` lets through (ids are not filtered: callers page by id)."""
    mask = pc.greater(table["id"], pa.scalar(s.after_id, pa.uint64()))
    if s.tenant is not None:
        mask = pc.and_(mask, pc.equal(table["tenant"], s.tenant))
    if s.types:
        mask = pc.and_(mask, pc.is_in(table["type"], value_set=pa.array(s.types)))
    if s.subject:
        mask = pc.and_(mask, pc.equal(table["subject"], s.subject))
    time_type = table.schema.field("time").type
    if s.since is not None:
        mask = pc.and_(mask, pc.greater_equal(table["time"], pa.scalar(s.since, time_type)))
    if s.until is not None:
        mask = pc.and_(mask, pc.less(table["time"], pa.scalar(s.until, time_type)))
    return table.filter(mask)


def query(data_dir: Path, s: Scope) -> pa.Table:
    """Matching events from the files (segments and WAL), oldest first."""
    return read_events(data_dir, tenant=s.tenant, type=list(s.types) or None, subject=s.subject or None,
                       since=s.since, until=s.until, min_id=s.after_id + 1)


def to_proto(row: dict) -> pb.Event:
    return pb.Event(id=row["id"], time_us=int(row["time"].timestamp() * 1_000_000), tenant=row["tenant"],
                    type=row["type"], subject=row["subject"], principal=row["principal"] or "",
                    causation_id=row["causation_id"] or 0, correlation_id=row["correlation_id"] or "",
                    payload_json=row["payload"] or "{}", schema_version=row["schema_version"])
