"""Registry records as plain dicts for transport (Ray returns them to the gateway)."""
from __future__ import annotations

import dataclasses

from solo.registry.state import ServiceRecord


def record_info(record: ServiceRecord, now: float, stats: dict | None = None) -> dict:
    placement = record.placement
    running = record.state == "RUNNING" and placement is not None
    return {
        "name": record.name, "version": record.version, "state": record.state,
        "node_id": placement.node_id if placement else "", "node_ip": placement.node_ip if placement else "",
        "pid": placement.pid if placement else 0, "restarts": record.restarts,
        "resources": dataclasses.asdict(record.spec.resources), "stats": stats or {},
        "created_at": record.created_at, "started_at": placement.started_at if running else 0.0,
        "uptime_seconds": max(0.0, now - placement.started_at) if running else 0.0,
        "message": record.message, "labels": dict(record.spec.labels),
        "methods": list(placement.methods) if placement else [],
        "class_name": placement.class_name if placement else record.spec.class_name,
        "filename": record.spec.filename, "limits": placement.limits if placement else "",
    }
