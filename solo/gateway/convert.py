"""Proto messages ↔ Solo's domain objects (used by the gateway and the client)."""
from __future__ import annotations

from solo._proto import solo_pb2 as pb
from solo.core.spec import Resources, ServiceSpec


def spec_from_proto(msg: pb.ServiceSpec) -> ServiceSpec:
    r = msg.resources
    return ServiceSpec(
        name=msg.name, source=msg.source, filename=msg.filename, version=msg.version, class_name=msg.class_name,
        resources=Resources(num_cpus=r.num_cpus, num_gpus=r.num_gpus, memory_bytes=r.memory_bytes,
                            custom=dict(r.custom)),
        env=dict(msg.env), config_json=msg.config_json, labels=dict(msg.labels),
        max_concurrency=msg.max_concurrency,
        max_restarts=msg.max_restarts if msg.HasField("max_restarts") else -1, allow_egress=tuple(msg.allow_egress),
        secrets=tuple(msg.secrets))


def info_to_proto(info: dict) -> pb.ServiceInfo:
    res, stats = info["resources"], info.get("stats") or {}
    return pb.ServiceInfo(
        name=info["name"], version=info["version"], state=info["state"], node_id=info["node_id"],
        node_ip=info["node_ip"], pid=info["pid"], restarts=info["restarts"],
        resources=pb.Resources(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"],
                               memory_bytes=res["memory_bytes"], custom=res["custom"]),
        stats=pb.ServiceStats(calls=stats.get("calls", 0), errors=stats.get("errors", 0),
                              in_flight=stats.get("in_flight", 0), rss_bytes=stats.get("rss_bytes", 0),
                              cpu_seconds=stats.get("cpu_seconds", 0.0)),
        created_at=info["created_at"], started_at=info["started_at"], uptime_seconds=info["uptime_seconds"],
        message=info["message"], labels=info["labels"], methods=info["methods"],
        class_name=info["class_name"], filename=info["filename"], limits=info.get("limits", ""))
