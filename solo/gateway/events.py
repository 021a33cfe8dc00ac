"""Event queries and Watch for the gateway: tenant scoping, filtering, conversion to proto."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
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


def _time(micros: int) -> datetime | None:
    return datetime.fromtimestamp(micros / 1_000_000, timezone.utc) if micros else None


def scope(principal: Principal, flt: pb.EventFilter) -> Scope:
    if flt.tenant and flt.tenant != principal.tenant and not principal.operator:
        # the same answer whether or not that tenant exists
        raise PermissionDenied("a tenant can only read its own events; leave the tenant filter empty")
    if flt.tenant:
        validate_name(flt.tenant, "tenant name")
    if flt.since_us and flt.until_us and flt.until_us <= flt.since_us:
        raise InvalidRequest("until must be later than since")
    tenant = flt.tenant or (None if principal.operator else principal.tenant)
    return Scope(tenant, tuple(flt.types), flt.subject, _time(flt.since_us), _time(flt.until_us), flt.after_id)


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
