"""The registry's state machine: pure Python, no Ray, no I/O.

Every mutation returns the record it changed, queues the events it implies in `outbox`, and bumps
`route_version` when what gateways route to has changed. Generations guard against stale
completions: a start that finishes after the service was stopped or replaced changes nothing.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType

from solo.core.routes import Route
from solo.core.spec import ServiceSpec
from solo.errors import AlreadyExists, FailedPrecondition, NotFound, Overloaded
from solo.events.redact import redact_text
from solo.registry.quotas import Quota, check_deploy, usage

ACTIVE = ("STARTING", "RUNNING", "RESTARTING")
STATES = ("STARTING", "RUNNING", "RESTARTING", "STOPPING", "STOPPED", "FAILED")
MAX_REASON = 2000  # characters of a reason (often a service's exception text) kept in events and routes
MAX_NODE_TEXT = 200  # characters of a node id or IP in an event (they come from Ray, kept short anyway)


def _said(record, text: str) -> str:
    """A service's words for its status message: capped and without its env values, like an event's reason (its
    vault values are scrubbed where they are known, in its host: runtime/host.py)."""
    return redact_text(text, record.spec.env)[:MAX_REASON]


@dataclass(frozen=True)
class Placement:
    address: str
    key: str
    pid: int
    node_id: str
    node_ip: str
    started_at: float
    methods: tuple[str, ...] = ()
    class_name: str = ""
    host: str = ""  # the host actor's name, so a rebuilt registry can take it over
    limits: str = ""  # how the host's limits are enforced (cgroup, watchdog, none)


@dataclass(frozen=True)
class SnapshotInfo:
    """What the registry knows of a service's latest periodic snapshot (the JSON text itself is kept on disk,
    snapshots.py): it belongs to one run of the service, its generation and restart count, so a version that
    was replaced or a process that crashed and came back fresh never gets it."""
    generation: int
    restarts: int
    version: str
    taken_at: float
    size: int
    digest: str  # sha256 of the text: an unchanged state is not written again


@dataclass
class ServiceRecord:
    tenant: str
    name: str
    spec: ServiceSpec
    version: str
    generation: int
    state: str
    created_at: float
    restarts: int = 0
    placement: Placement | None = None
    message: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)


# Who the running operation acts for ({"principal", "request_id"}; {} for Solo itself). The registry
# actor sets it per RPC; each asyncio task has its own. Events are stamped with it when queued, so they
# keep their principal whichever operation's commit writes them.
acting_for: ContextVar[Mapping] = ContextVar("acting_for", default=MappingProxyType({}))  # read-only default


@dataclass
class Event:
    type: str
    tenant: str
    subject: str
    payload: dict = field(default_factory=dict)
    after_crash: bool = False  # caused by the service's latest crash (becomes causation_id)
    who: dict | None = None  # stamped when queued by the state; None: the writer's `who` applies


class RegistryState:
    def __init__(self, max_services_per_tenant: int = 1000, clock: Callable[[], float] = time.time,
                 first_route_version: int = 1, quota_for: Callable[[str], Quota] | None = None):
        self.services: dict[tuple[str, str], ServiceRecord] = {}
        self.route_version = first_route_version
        self.outbox: list[Event] = []
        self.quota_for = quota_for or (lambda tenant: Quota(max_services=max_services_per_tenant))
        self.clock = clock
        self._generations: dict[tuple[str, str], int] = {}
        self.reserved: dict[tuple[str, str], object] = {}  # resources of versions kept in a watch window
        self.snapshots: dict[tuple[str, str], SnapshotInfo] = {}  # the latest periodic snapshot, one per service

    # -- reads ---------------------------------------------------------------------------------
    def get(self, tenant: str, name: str) -> ServiceRecord:
        record = self.services.get((tenant, name))
        if record is None:
            raise NotFound(f"service {name!r} not found; deploy it first or check the name with `solo ls`")
        return record

    def list(self, tenant: str) -> list[ServiceRecord]:
        return sorted((r for r in self.services.values() if r.tenant == tenant), key=lambda r: r.name)

    def routes(self) -> list[Route]:
        return [Route(r.tenant, r.name, r.version, r.state,
                      r.placement.address if r.placement and r.state == "RUNNING" else "",
                      r.placement.key if r.placement and r.state == "RUNNING" else "", r.message[:MAX_REASON],
                      r.spec.max_concurrency, methods=r.placement.methods if r.placement else (),
                      restarts=r.restarts)
                for r in self.services.values()]

    # -- deploy --------------------------------------------------------------------------------
    def plan_deploy(self, tenant: str, spec: ServiceSpec, replace_existing: bool) -> tuple[str, ServiceRecord]:
        """Decide what a deploy means: ("noop" | "create" | "replace", record to start)."""
        key = (tenant, spec.name)
        current = self.services.get(key)
        if current is not None and current.state in ACTIVE:
            if current.spec.fingerprint() == spec.fingerprint():
                return "noop", current
            if not replace_existing:
                raise AlreadyExists(f"service {spec.name!r} already runs version {current.version} with a "
                                    "different spec; pass --replace (replace=true) to replace it, or pick another name")
        replacing = current.spec.resources if current is not None and current.state in ACTIVE else None
        check_deploy(self.quota_for(tenant), self._usage(tenant), spec.resources, replacing,
                     new_service=current is None)
        generation = self._generations.get(key, 0) + 1
        record = ServiceRecord(tenant, spec.name, spec, spec.version or str(generation), generation,
                               "STARTING", self.clock())
        if current is not None and current.state in ACTIVE:
            self._emit(record, "service.deploying", version=record.version, filename=spec.filename,
                       resources=spec.resources.describe(), env_keys=sorted(spec.env), labels=spec.labels,
                       replaces=current.version, spec=spec.fingerprint(), generation=generation)
            return "replace", record
        self._generations[key] = generation
        self.services[key] = record
        self._emit(record, "service.deploying", version=record.version, filename=spec.filename,
                   resources=spec.resources.describe(), env_keys=sorted(spec.env), labels=spec.labels,
                   spec=spec.fingerprint(), generation=generation)
        self._bump()
        return "create", record

    def started(self, record: ServiceRecord, placement: Placement, restarted: bool = False,
                recovered: str = "") -> ServiceRecord | None:
        """Record a host that finished starting. None when the start is stale (the caller drops the host)."""
        key = record.key
        current = self.services.get(key)
        if self._stale_start(record, current):
            return None
        if current is not None and current is not record and current.generation == record.generation:
            record = current
        replaced = current if current is not None and current is not record else None
        self._generations[key] = max(self._generations.get(key, 0), record.generation)
        record.state, record.placement, record.message = "RUNNING", placement, ""
        self.services[key] = record
        if replaced is not None:
            self._emit(record, "service.replaced", version=record.version, previous_version=replaced.version)
        kind = "service.recovered" if recovered else "service.restarted" if restarted else "service.started"
        extra = {"how": recovered} if recovered else {}
        self._emit(record, kind, version=record.version, node_id=placement.node_id, pid=placement.pid,
                   restarts=record.restarts, host=placement.host, after_crash=restarted, **extra)
        self._bump()
        return record

    def _stale_start(self, record: ServiceRecord, current: ServiceRecord | None) -> bool:
        if current is not None and current.generation > record.generation:
            return True  # a newer deploy already won
        if current is None and self._generations.get(record.key, 0) >= record.generation:
            return True  # removed while it was starting
        return current is not None and current.state in ("STOPPING", "STOPPED")  # stopped while it was starting

    def start_failed(self, record: ServiceRecord, message: str, replacing: bool) -> None:
        if replacing:
            self._emit(record, "service.replace_failed", version=record.version, reason=message)
            return
        if self.services.get(record.key) is not record or record.state in ("STOPPING", "STOPPED"):
            return
        record.state, record.message, record.placement = "FAILED", _said(record, message), None
        self._emit(record, "service.failed", version=record.version, reason=message)
        self._bump()

    # -- hot swap ------------------------------------------------------------------------------
    def plan_swap(self, tenant: str, spec: ServiceSpec, kind: str = "swap") -> tuple[ServiceRecord, ServiceRecord, str]:
        """A swap of a running service to `spec`: (current, new record, mode). Mode "side_by_side" when the
        tenant's quota holds both versions at once, else "stop_start". The new record is not routed yet."""
        current = self.get(tenant, spec.name)
        if current.state != "RUNNING":
            raise FailedPrecondition(f"service {spec.name!r} is {current.state}, and a swap hands over a running "
                                     "version's state; deploy it instead (solo deploy --replace)")
        if current.spec.fingerprint() == spec.fingerprint():
            raise FailedPrecondition(f"service {spec.name!r} already runs this code as version {current.version}")
        use = self._usage(tenant)
        quota = self.quota_for(tenant)
        try:
            check_deploy(quota, use, spec.resources, None, new_service=False)
            mode = "side_by_side"
        except Overloaded:
            check_deploy(quota, use, spec.resources, current.spec.resources, new_service=False)
            mode = "stop_start"
        generation = self.next_generation(current.key)
        new = ServiceRecord(tenant, spec.name, spec, spec.version or str(generation), generation, "STARTING",
                            current.created_at)
        self._emit(current, "service.swap_started", version=new.version, previous_version=current.version,
                   spec=spec.fingerprint(), generation=generation, mode=mode, filename=spec.filename, kind=kind)
        return current, new, mode

    def swap_ready(self, new: ServiceRecord, previous: ServiceRecord, seconds: float) -> None:
        self._emit(new, "service.swap_ready", version=new.version, previous_version=previous.version,
                   seconds=round(seconds, 4))

    def swapped(self, previous: ServiceRecord, new: ServiceRecord, placement: Placement, state: str) -> ServiceRecord:
        """Traffic moves to the new version (the caller then publishes the routes)."""
        new.state, new.placement, new.message = "RUNNING", placement, ""
        self.services[new.key] = new
        self._emit(new, "service.swapped", version=new.version, previous_version=previous.version, state=state,
                   node_id=placement.node_id, pid=placement.pid, host=placement.host)
        self._bump()
        return new

    def swap_failed(self, previous: ServiceRecord, new: ServiceRecord, reason: str) -> None:
        self._emit(previous, "service.swap_failed", version=new.version, previous_version=previous.version,
                   reason=reason)
        self._bump()  # wake calls waiting for a route that will not move

    def swap_succeeded(self, record: ServiceRecord, previous_version: str) -> None:
        self._emit(record, "service.swap_succeeded", version=record.version, previous_version=previous_version)

    def rolled_back(self, failed: ServiceRecord, back: ServiceRecord, reason: str, state: str,
                    placement: Placement | None = None, seconds: float = 0.0) -> ServiceRecord:
        """Traffic returns to `back` (the kept previous version, or a past one started again)."""
        back.state, back.message = "RUNNING", f"rolled back from version {failed.version}: {reason}"
        if placement is not None:
            back.placement = placement
        self.services[back.key] = back
        self._generations[back.key] = max(self._generations.get(back.key, 0), back.generation)
        p = back.placement
        self._emit(back, "service.rolled_back", version=back.version, from_version=failed.version, reason=reason,
                   state=state, spec=back.spec.fingerprint(), generation=back.generation,
                   host=p.host if p else "", pid=p.pid if p else 0, node_id=p.node_id if p else "",
                   seconds=round(seconds, 4))
        self._bump()
        return back

    def rollback_failed(self, record: ServiceRecord, to_version: str, reason: str, why: str) -> None:
        self._emit(record, "service.rollback_failed", version=record.version, to_version=to_version, reason=reason,
                   why=why)

    def _usage(self, tenant: str):
        """What the tenant's active services request, plus versions kept ready in a swap's watch window."""
        mine = [r for r in self.services.values() if r.tenant == tenant]
        held = [r.spec.resources for r in mine if r.state in ACTIVE]
        held += [res for (t, _), res in self.reserved.items() if t == tenant]
        return usage(held, len(mine))

    def check_start(self, tenant: str, spec: ServiceSpec) -> None:
        """A stopped or failed service is started again (a rollback to a past version): within the quota?"""
        check_deploy(self.quota_for(tenant), self._usage(tenant), spec.resources, None, new_service=False)

    def next_generation(self, key: tuple[str, str]) -> int:
        generation = self._generations.get(key, 0) + 1
        self._generations[key] = generation
        return generation

    # -- crashes -------------------------------------------------------------------------------
    def limit_exceeded(self, tenant: str, name: str, generation: int, policy: str, **details) -> None:
        """A host ended itself for breaking a limit (the crash that follows applies the policy)."""
        record = self.services.get((tenant, name))
        if record is not None and record.generation == generation:
            self._emit(record, "service.limit_exceeded", version=record.version, policy=policy, **details)

    def crashed(self, tenant: str, name: str, generation: int, pid: int, message: str,
                max_restarts: int) -> ServiceRecord | None:
        """The host died. Returns the record to restart, or None (stale, or out of restarts)."""
        record = self.services.get((tenant, name))
        if record is None or record.generation != generation or record.state not in ("RUNNING", "RESTARTING"):
            return None
        if record.placement is not None and record.placement.pid != pid:
            return None  # an older process of this generation; the current one is fine
        self._emit(record, "service.crashed", version=record.version, pid=pid, reason=message,
                   restarts=record.restarts)
        record.placement = None
        if record.restarts >= max_restarts:
            record.state = "FAILED"
            record.message = _said(record, f"crashed {record.restarts + 1} time(s), restart limit {max_restarts} "
                                           f"reached: {message}")
            self._emit(record, "service.failed", version=record.version, reason=record.message, after_crash=True)
            self._bump()
            return None
        record.restarts += 1
        record.state = "RESTARTING"
        record.message = _said(record, f"restart {record.restarts} of {max_restarts} after: {message}")
        self._emit(record, "service.restarting", version=record.version, attempt=record.restarts, after_crash=True)
        self._bump()
        return record

    # -- node loss -----------------------------------------------------------------------------
    def node_lost(self, node_id: str, node_ip: str, reason: str,
                  skip: Callable[[ServiceRecord], bool] = lambda record: False) -> list[ServiceRecord]:
        """A node died with hosts on it: every service RUNNING there (but those `skip` keeps) becomes RESTARTING,
        to be rescheduled on a surviving node. Not a crash: the restart count stays. One `node.lost` per tenant
        affected, naming that tenant's services only (events are read per tenant). Returns the records to
        reschedule, none when the node was handled already (each host's watcher reports the same node)."""
        lost = sorted((r for r in self.services.values()
                       if r.state == "RUNNING" and r.placement is not None and r.placement.node_id == node_id
                       and not skip(r)), key=lambda r: r.key)
        by_tenant: dict[str, list[ServiceRecord]] = {}
        for record in lost:
            by_tenant.setdefault(record.tenant, []).append(record)
        for tenant, records in by_tenant.items():
            self.outbox.append(Event("node.lost", tenant, node_id[:MAX_NODE_TEXT], {
                "node_id": node_id[:MAX_NODE_TEXT], "node_ip": node_ip[:MAX_NODE_TEXT],
                "services": [r.name for r in records], "reason": reason[:MAX_REASON]}, who=acting_for.get()))
        for record in lost:
            record.state, record.placement = "RESTARTING", None
            record.message = f"rescheduling: its node {node_id[:12]} ({node_ip[:64]}) was lost"
        if lost:
            self._bump()
        return lost

    def rescheduled(self, record: ServiceRecord, placement: Placement, from_node: str, restored: str,
                    snapshot_age: float | None = None) -> ServiceRecord | None:
        """A service moved off a lost node runs again on `placement`. None when stale (stopped, replaced or
        removed meanwhile: the caller drops the host)."""
        current = self.services.get(record.key)
        if current is not record or self._stale_start(record, current) or record.state != "RESTARTING":
            return None
        record.state, record.placement, record.message = "RUNNING", placement, ""
        extra = {} if snapshot_age is None else {"snapshot_age_seconds": round(max(0.0, snapshot_age), 3)}
        self._emit(record, "service.rescheduled", version=record.version, node_id=placement.node_id,
                   pid=placement.pid, host=placement.host, from_node=from_node[:MAX_NODE_TEXT],
                   restarts=record.restarts, state=restored, **extra)
        self._bump()
        return record

    def reschedule_failed(self, record: ServiceRecord, reason: str) -> None:
        """No surviving node took the service (or it did not start there): FAILED, with why."""
        if self.services.get(record.key) is not record or record.state != "RESTARTING":
            return
        record.state, record.placement = "FAILED", None
        record.message = _said(record, f"could not be rescheduled after its node was lost: {reason}")
        self._emit(record, "service.failed", version=record.version, reason=record.message)
        self._bump()

    # -- periodic snapshots (the text is on disk, see snapshots.py) ---------------------------------
    def snapshot_taken(self, record: ServiceRecord, size: int, digest: str, max_bytes: int) -> SnapshotInfo | None:
        """Keep `record`'s latest snapshot (one per service, replacing the one before). None when it is not
        kept: the service is no longer that running record, or the text is over `max_bytes`."""
        if self.services.get(record.key) is not record or record.state != "RUNNING" or not 0 < size <= max_bytes:
            return None
        info = SnapshotInfo(record.generation, record.restarts, record.version, self.clock(), size, digest)
        self.snapshots[record.key] = info
        return info

    def snapshot_for(self, record: ServiceRecord) -> SnapshotInfo | None:
        """The kept snapshot if it belongs to this run of the service (same generation, no crash since)."""
        info = self.snapshots.get(record.key)
        if info is None or (info.generation, info.restarts) != (record.generation, record.restarts):
            return None
        return info

    # -- stop ----------------------------------------------------------------------------------
    def stopping(self, tenant: str, name: str) -> ServiceRecord:
        record = self.get(tenant, name)
        if record.state in ACTIVE:
            record.state = "STOPPING"
            self._bump()
        return record

    def suspend_all(self, reason: str) -> None:
        """Solo itself stops: services stop but stay wanted, and come back when Solo starts again."""
        for record in self.services.values():
            if record.state in ACTIVE or record.state == "STOPPING":
                record.state, record.placement, record.message = "STOPPED", None, reason
                self._emit(record, "service.suspended", version=record.version, reason=reason)
        self._bump()

    def stopped(self, tenant: str, name: str, remove: bool, message: str = "") -> ServiceRecord:
        record = self.get(tenant, name)
        record.state, record.placement, record.message = "STOPPED", None, _said(record, message)
        self._emit(record, "service.removed" if remove else "service.stopped", version=record.version)
        self.snapshots.pop(record.key, None)  # a later start is a new run: it never gets this run's state
        if remove:
            del self.services[record.key]
        self._bump()
        return record

    # -- rebuild -------------------------------------------------------------------------------
    def restore(self, view, spec: ServiceSpec | None) -> ServiceRecord:
        """Put back a service folded from the event log (see rebuild.py); wanted ones are RESTARTING."""
        key = (view.tenant, view.name)
        state, message = ("RESTARTING", "recovering after a registry restart") if view.wanted else \
            (view.state, view.message)
        if spec is None:
            if view.wanted:  # it should run, and cannot
                state, message = "FAILED", (f"the spec of version {view.version} is missing from the data "
                                            "directory's specs/; deploy the service again")
            # else it does not run either way (a service whose first start failed keeps no spec file)
            spec = ServiceSpec(name=view.name, source="", version=view.version)
        record = ServiceRecord(view.tenant, view.name, spec, view.version, view.generation, state,
                               view.created_at, view.restarts, None, message)
        self.services[key] = record
        self._generations[key] = max(self._generations.get(key, 0), view.generation)
        self._bump()
        return record

    # -- undo (for operations whose events could not be written) -------------------------------
    def save(self, key: tuple[str, str]) -> tuple:
        record = self.services.get(key)
        return (copy.copy(record) if record else None, record, self._generations.get(key))

    def revert(self, key: tuple[str, str], saved: tuple) -> None:
        """Put one service back as it was at `save()` (its events were never written)."""
        values, original, generation = saved
        if original is None:
            self.services.pop(key, None)
        else:
            original.__dict__.update(values.__dict__)
            self.services[key] = original
        if generation is None:
            self._generations.pop(key, None)
        else:
            self._generations[key] = generation
        self.outbox = [e for e in self.outbox if (e.tenant, e.subject) != key or not e.type.startswith("service.")]
        self._bump()

    # -- plumbing ------------------------------------------------------------------------------
    def _emit(self, record: ServiceRecord, type_: str, after_crash: bool = False, **payload) -> None:
        # reasons carry the service's own words (its exception's text): capped, so no service can make
        # events, route tables or status answers large, and without its env values (a connection error
        # can quote a password it was given; events/redact.py)
        payload = {k: redact_text(v, record.spec.env)[:MAX_REASON] if isinstance(v, str) and k in ("reason", "why")
                   else v for k, v in payload.items()}
        self.outbox.append(Event(type_, record.tenant, record.name, payload, after_crash=after_crash,
                                 who=acting_for.get()))

    def _bump(self) -> None:
        self.route_version += 1

    def take_events(self) -> list[Event]:
        events, self.outbox = self.outbox, []
        return events

