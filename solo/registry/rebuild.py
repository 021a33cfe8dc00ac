"""Rebuilding the registry from the event log: fold service events into what each service should be.

Pure: rows in, views out. A checkpoint (the views and the last folded id) keeps the rebuild time
bounded: only events after it are read on the next start.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from solo.files import write_atomic

CHECKPOINT_FILE = "registry-checkpoint.json"


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


def fold(rows: Iterable[dict], views: dict[tuple[str, str], ServiceView] | None = None,
         grants: set[tuple[str, str, str]] | None = None) -> dict:
    """Service events into `views`; with `grants`, discovery grants (owner, service, grantee) into it too."""
    views = {} if views is None else views
    for row in rows:
        kind = row["type"]
        granting = grants is not None and kind in ("discovery.granted", "discovery.grant_revoked")
        if not granting and not kind.startswith("service."):
            continue
        payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else (row["payload"] or {})
        if granting:
            grant = (row["tenant"], payload.get("service", ""), payload.get("to_tenant", ""))
            (grants.add if kind == "discovery.granted" else grants.discard)(grant)
            continue
        key = (row["tenant"], row["subject"])
        view = views.get(key)
        if kind == "service.deploying":
            fresh = {"spec": payload.get("spec", ""), "version": payload.get("version", ""),
                     "generation": payload.get("generation", 0)}
            if payload.get("replaces") and view is not None:
                view.pending = fresh
            else:
                views[key] = ServiceView(key[0], key[1], created_at=_seconds(row["time"]), **fresh)
            continue
        if view is None:
            continue
        if kind == "service.swap_started":
            view.pending = {"spec": payload.get("spec", ""), "version": payload.get("version", ""),
                            "generation": payload.get("generation", 0)}
        elif kind == "service.swapped" and view.pending:
            view.spec, view.version, view.generation = (view.pending["spec"], view.pending["version"],
                                                         view.pending["generation"])
            view.pending, view.restarts = {}, 0
            view.state, view.wanted, view.message = "RUNNING", True, ""
            view.host, view.pid = payload.get("host", ""), payload.get("pid", 0)
        elif kind == "service.swap_failed":
            view.pending = {}
        elif kind == "service.rolled_back":
            view.spec, view.version = payload.get("spec", view.spec), payload.get("version", view.version)
            view.generation = payload.get("generation", view.generation)
            view.pending, view.restarts = {}, 0
            view.state, view.wanted, view.message = "RUNNING", True, ""
            view.host, view.pid = payload.get("host", ""), payload.get("pid", 0)
        elif kind == "service.replaced" and view.pending:
            view.spec, view.version, view.generation = (view.pending["spec"], view.pending["version"],
                                                         view.pending["generation"])
            view.pending, view.restarts = {}, 0
        elif kind in ("service.started", "service.restarted", "service.recovered"):
            view.state, view.wanted, view.message = "RUNNING", True, ""
            view.host, view.pid = payload.get("host", ""), payload.get("pid", 0)
            view.restarts = payload.get("restarts", view.restarts)
        elif kind == "service.replace_failed":
            view.pending = {}
        elif kind == "service.crashed":
            view.state, view.host, view.pid = "RESTARTING", "", 0
        elif kind == "service.restarting":
            view.restarts = payload.get("attempt", view.restarts)
        elif kind == "service.failed":
            view.state, view.wanted, view.host = "FAILED", False, ""
            view.message = payload.get("reason", "")
        elif kind == "service.stopped":
            view.state, view.wanted, view.host = "STOPPED", False, ""
        elif kind == "service.suspended":
            view.state, view.host = "STOPPED", ""
        elif kind == "service.removed":
            del views[key]
            if grants is not None:  # a removed service's grants go with it
                grants.difference_update({g for g in grants if g[:2] == key})
    return views


def _seconds(value) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value or 0)


def load_checkpoint(data_dir: Path) -> tuple[int, dict]:
    path = Path(data_dir) / CHECKPOINT_FILE
    if not path.exists():
        return 0, {}
    data = json.loads(path.read_text())
    views = {(v["tenant"], v["name"]): ServiceView(**v) for v in data["services"]}
    return data["last_id"], views


def load_grants(data_dir: Path) -> set[tuple[str, str, str]]:
    path = Path(data_dir) / CHECKPOINT_FILE
    if not path.exists():
        return set()
    return {tuple(g) for g in json.loads(path.read_text()).get("grants", [])}


def write_checkpoint(data_dir: Path, last_id: int, views: dict, grants: set | None = None) -> None:
    write_atomic(Path(data_dir) / CHECKPOINT_FILE,
                 json.dumps({"last_id": last_id, "services": [dataclasses.asdict(v) for v in views.values()],
                             "grants": sorted(grants or ())}), 0o644)
