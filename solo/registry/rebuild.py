"""Rebuilding the registry from the event log: fold service events into what each service should be.

Pure: rows in, views out. A checkpoint (the views and the last folded id) keeps the rebuild time
bounded: only events after it are read on the next start. Rows and checkpoint entries are checked
before they are used (events/readback.py): a malformed one is skipped, never a reason not to start.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from solo.events import readback
from solo.events.readback import BadRow, Skipped
from solo.files import write_atomic

log = logging.getLogger("solo.registry")

CHECKPOINT_FILE = "registry-checkpoint.json"
FOLDED = frozenset({  # the service events a rebuild acts on (the others only tell what happened)
    "service.deploying", "service.swap_started", "service.swapped", "service.swap_failed", "service.rolled_back",
    "service.replaced", "service.started", "service.restarted", "service.recovered", "service.replace_failed",
    "service.crashed", "service.restarting", "service.failed", "service.stopped", "service.suspended",
    "service.removed", "service.rescheduled", "node.lost"})


@dataclass
class ServiceView:
    tenant: str
    name: str
    spec: str = ""            # fingerprint, see specs.py
    version: str = ""
    generation: int = 0
    wanted: bool = True       # should run (a `solo down` keeps this; stop and failure clear it)
    state: str = "STARTING"
    restarts: int = 0
    host: str = ""            # the host actor's name while RUNNING
    pid: int = 0
    created_at: float = 0.0
    message: str = ""
    pending: dict = field(default_factory=dict)  # a replacement that has not switched yet
    moving: str = ""          # the lost node it is being moved off (node.lost), until it runs again


def fold(rows: Iterable[dict], views: dict[tuple[str, str], ServiceView] | None = None,
         grants: set[tuple[str, str, str]] | None = None, skipped: Skipped | None = None) -> dict:
    """Service events into `views`; with `grants`, discovery grants (owner, service, grantee) into it too.

    A row that is not in the shape Solo writes (see events/readback.py) is skipped and counted in
    `skipped` (without one, reported here in one warning): a bad row never stops a rebuild."""
    views = {} if views is None else views
    own = skipped is None
    skipped = Skipped("rebuilding the registry", log) if own else skipped
    for row in rows:
        kind = row.get("type")
        granting = grants is not None and kind in ("discovery.granted", "discovery.grant_revoked")
        if not granting and kind not in FOLDED:
            continue
        try:
            _apply(row, kind, views, grants, granting)
        except BadRow as exc:
            skipped.skip(f"event {row.get('id')} ({kind})", exc)
    if own:
        skipped.report()
    return views


def _apply(row: dict, kind: str, views: dict, grants: set | None, granting: bool) -> None:
    """One checked row into `views` (or `grants`); raises BadRow before changing anything."""
    payload = readback.payload(row.get("payload"))
    tenant = readback.name(row.get("tenant"), "tenant")
    if granting:
        grant = (tenant, readback.name(payload.get("service"), "service"),
                 readback.name(payload.get("to_tenant"), "grantee tenant"))
        (grants.add if kind == "discovery.granted" else grants.discard)(grant)
        return
    if kind == "node.lost":  # the subject is the node; the payload names the tenant's services that were on it
        services = payload.get("services")
        if not isinstance(services, list):
            raise BadRow("'services' is not a list")
        node = readback.text(payload, "node_id", "", readback.PRINTABLE)
        for name in [readback.name(s, "service name") for s in services]:
            view = views.get((tenant, name))
            if view is not None and view.state == "RUNNING":
                view.state, view.host, view.pid, view.moving = "RESTARTING", "", 0, node or "unknown"
        return
    key = (tenant, readback.name(row.get("subject"), "service name"))
    view = views.get(key)
    if kind == "service.deploying":
        fresh = _version_of(payload)
        if readback.text(payload, "replaces", "") and view is not None:
            view.pending = fresh
        else:
            views[key] = ServiceView(key[0], key[1], created_at=_seconds(row.get("time")), **fresh)
        return
    if view is None:
        return
    view.moving = ""  # whatever came next (running again, a crash, a stop, a new version) ends the move
    if kind == "service.swap_started":
        view.pending = _version_of(payload)
    elif kind == "service.swapped" and view.pending:
        host, pid = _placement(payload)
        view.spec, view.version, view.generation = (view.pending["spec"], view.pending["version"],
                                                     view.pending["generation"])
        view.pending, view.restarts = {}, 0
        view.state, view.wanted, view.message = "RUNNING", True, ""
        view.host, view.pid = host, pid
    elif kind == "service.swap_failed":
        view.pending = {}
    elif kind == "service.rolled_back":
        spec = readback.text(payload, "spec", view.spec, readback.PRINTABLE)
        version = readback.text(payload, "version", view.version, readback.PRINTABLE)
        generation = readback.integer(payload, "generation", view.generation)
        host, pid = _placement(payload)
        view.spec, view.version, view.generation = spec, version, generation
        view.pending, view.restarts = {}, 0
        view.state, view.wanted, view.message = "RUNNING", True, ""
        view.host, view.pid = host, pid
    elif kind == "service.replaced" and view.pending:
        view.spec, view.version, view.generation = (view.pending["spec"], view.pending["version"],
                                                     view.pending["generation"])
        view.pending, view.restarts = {}, 0
    elif kind in ("service.started", "service.restarted", "service.recovered", "service.rescheduled"):
        host, pid = _placement(payload)
        restarts = readback.integer(payload, "restarts", view.restarts)
        view.state, view.wanted, view.message = "RUNNING", True, ""
        view.host, view.pid, view.restarts = host, pid, restarts
    elif kind == "service.replace_failed":
        view.pending = {}
    elif kind == "service.crashed":
        view.state, view.host, view.pid = "RESTARTING", "", 0
    elif kind == "service.restarting":
        view.restarts = readback.integer(payload, "attempt", view.restarts)
    elif kind == "service.failed":
        message = readback.text(payload, "reason", "")
        view.state, view.wanted, view.host = "FAILED", False, ""
        view.message = message
    elif kind == "service.stopped":
        view.state, view.wanted, view.host = "STOPPED", False, ""
    elif kind == "service.suspended":
        view.state, view.host = "STOPPED", ""
    elif kind == "service.removed":
        del views[key]
        if grants is not None:  # a removed service's grants go with it
            grants.difference_update({g for g in grants if g[:2] == key})


def _version_of(payload: dict) -> dict:
    return {"spec": readback.text(payload, "spec", "", readback.PRINTABLE),
            "version": readback.text(payload, "version", "", readback.PRINTABLE),
            "generation": readback.integer(payload, "generation", 0)}


def _placement(payload: dict) -> tuple[str, int]:
    return readback.text(payload, "host", "", readback.PRINTABLE), readback.integer(payload, "pid", 0)


def _seconds(value) -> float:
    seconds = value.timestamp() if hasattr(value, "timestamp") else value or 0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not abs(seconds) < 1e12:
        raise BadRow(f"the time is not a time ({str(value)[:40]!r})")
    return float(seconds)


def load_checkpoint(data_dir: Path) -> tuple[int, dict]:
    """(last folded id, views) from the checkpoint; (0, {}) without a usable one (the rebuild then folds
    the whole log). Entries not in the shape Solo writes are skipped, with one warning."""
    data = _read_checkpoint(data_dir, warn=True)
    if data is None:
        return 0, {}
    skipped = Skipped(f"reading {CHECKPOINT_FILE}", log)
    views = {}
    entries = data.get("services")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        try:
            view = _view(entry)
        except BadRow as exc:
            skipped.skip(f"service entry {index}", exc)
            continue
        views[(view.tenant, view.name)] = view
    if not isinstance(entries, list):
        skipped.skip("services", "not a list")
    skipped.report()
    return data["last_id"], views


def load_grants(data_dir: Path) -> set[tuple[str, str, str]]:
    """The discovery grants in the checkpoint (load_checkpoint has said it if the file is unusable)."""
    data = _read_checkpoint(data_dir, warn=False)
    if data is None:
        return set()
    skipped = Skipped(f"reading the grants in {CHECKPOINT_FILE}", log)
    grants = set()
    entries = data.get("grants", [])
    for index, entry in enumerate(entries if isinstance(entries, list) else [None]):
        try:
            if not isinstance(entry, list) or len(entry) != 3:
                raise BadRow("a grant is [owner, service, grantee]")
            grants.add((readback.name(entry[0], "owner"), readback.name(entry[1], "service"),
                        readback.name(entry[2], "grantee")))
        except BadRow as exc:
            skipped.skip(f"grant {index}", exc)
    skipped.report()
    return grants


def _read_checkpoint(data_dir: Path, warn: bool) -> dict | None:
    """The checkpoint as a dict with a valid `last_id`, or None (missing, unreadable, not Solo's shape)."""
    path = Path(data_dir) / CHECKPOINT_FILE
    try:
        data = readback.payload(path.read_text())
        readback.integer(data, "last_id")
        return data
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, BadRow) as exc:
        if warn:
            log.warning("the registry checkpoint %s is unusable (%s); rebuilding from the whole event log", path,
                        exc)
        return None


_STATES = {"STARTING", "RUNNING", "RESTARTING", "STOPPING", "STOPPED", "FAILED"}


def _view(entry: object) -> ServiceView:
    """One checkpoint entry, checked field by field (missing fields take their defaults)."""
    if not isinstance(entry, dict):
        raise BadRow(f"an entry is {type(entry).__name__}, not an object")
    state = readback.text(entry, "state", "STARTING")
    if state not in _STATES:
        raise BadRow(f"unknown state {state[:40]!r}")
    pending = entry.get("pending") or {}
    if not isinstance(pending, dict):
        raise BadRow("'pending' is not an object")
    return ServiceView(
        tenant=readback.name(entry.get("tenant"), "tenant"), name=readback.name(entry.get("name"), "service name"),
        spec=readback.text(entry, "spec", "", readback.PRINTABLE),
        version=readback.text(entry, "version", "", readback.PRINTABLE),
        generation=readback.integer(entry, "generation", 0), wanted=readback.flag(entry, "wanted", True),
        state=state, restarts=readback.integer(entry, "restarts", 0),
        host=readback.text(entry, "host", "", readback.PRINTABLE), pid=readback.integer(entry, "pid", 0),
        created_at=readback.number(entry, "created_at", 0.0), message=readback.text(entry, "message", ""),
        pending=_version_of(pending) if pending else {},
        moving=readback.text(entry, "moving", "", readback.PRINTABLE))


def write_checkpoint(data_dir: Path, last_id: int, views: dict, grants: set | None = None) -> None:
    write_atomic(Path(data_dir) / CHECKPOINT_FILE,
                 json.dumps({"last_id": last_id, "services": [dataclasses.asdict(v) for v in views.values()],
                             "grants": sorted(grants or ())}), 0o644)
