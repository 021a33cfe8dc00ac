"""The `solo` command: start and stop Solo, deploy, call and inspect services.

Human tables by default, `--json` for scripts; on error, a non-zero exit and the server's message.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from solo import cli_config, cli_logs, cli_secrets
from solo.cli_discovery import add_discovery_parsers
from solo.cli_output import (
    Progress,
    float_arg,
    int_arg,
    parse_amounts,
    parse_bytes,
    parse_json,
    parse_pairs,
    parse_since,
    print_service,
    print_table,
)
from solo.cli_output import client as _client
from solo.cli_output import emit as _emit
from solo.cli_security import add_security_parsers
from solo.errors import InvalidRequest, SoloError

EXIT_CODES = {"INVALID_ARGUMENT": 2, "NOT_FOUND": 3, "UNAUTHENTICATED": 4, "PERMISSION_DENIED": 4,
              "UNAVAILABLE": 5, "DEADLINE_EXCEEDED": 6}


def cmd_up(args) -> int:
    from solo.cli_up import up
    return up(args)


def cmd_down(args) -> int:
    from solo.cli_up import down
    return down(args)


def cmd_deploy(args) -> int:
    example = "'{\"greeting\": \"hi\"}'"
    config = parse_json(args.config, "--config", example) if args.config else None
    if config is not None and not isinstance(config, dict):
        raise InvalidRequest(f"--config must be a JSON object, e.g. {example}")
    spec = dict(version=args.version or "", class_name=args.class_name or "", num_cpus=args.cpus or 0.0,
                num_gpus=args.gpus or 0.0, memory=parse_bytes(args.memory) if args.memory else 0,
                resources=parse_amounts(args.resource, "--resource"),
                env=parse_pairs(args.env, "--env"), config=config, labels=parse_pairs(args.label, "--label"),
                max_concurrency=args.concurrency or 0, max_restarts=args.max_restarts,
                allow_egress=args.allow_egress or (), secrets=args.secret or ())
    with _client(args) as client, Progress(f"deploying {args.file}", enabled=not args.json):
        info = client.deploy(args.file, args.name, replace=args.replace, **spec)
    _emit(args, info, print_service)
    return 0


def cmd_swap(args) -> int:
    with _client(args) as client, Progress(f"swapping {args.name} to {args.file}", enabled=not args.json):
        result = client.swap(args.name, args.file, version=args.version or "", class_name=args.class_name or "",
                             watch_seconds=args.watch)
    _emit(args, result, _print_swap)
    return 0


def _print_swap(result: dict) -> None:
    service = result["service"]
    print(f"{service['name']}: version {service['version']} serving (was {result['previous_version']}), "
          f"switched {result['switch_seconds']:.2f} s after the request")
    print(f"  state: {result['state']}")
    if result["mode"] == "stop_start":
        print("  the tenant's quota holds one version at a time, so the old one was stopped before the new one "
              "started (no watch window)")
    elif result["watch_seconds"]:
        print(f"  watching it for {result['watch_seconds']:g} s: a crash, a failed health check or too many failed "
              f"calls rolls it back; `solo rollback {service['name']}` goes back now")


def cmd_rollback(args) -> int:
    with _client(args) as client, Progress(f"rolling {args.name} back", enabled=not args.json):
        result = client.rollback(args.name, args.to or "")
    _emit(args, result, lambda r: print(f"{r['service']['name']}: version {r['service']['version']} serving again "
                                        f"(was {r['from_version']}); state: {r['state']}"))
    return 0


def cmd_call(args) -> int:
    from solo._proto import solo_pb2 as pb
    from solo.client import result_value
    if args.args is not None:
        parse_json(args.args, "arguments", "'{\"by\": 2}' or '[1, 2]' or '\"text\"'")
    request = pb.InvokeRequest(service=args.service, method=args.method, json=args.args or "")
    with _client(args) as client:
        if args.stream:
            for response in _stream(client, request, args.timeout):
                value = result_value(response)
                print(value.decode(errors="replace") if isinstance(value, bytes) else json.dumps(value), flush=True)
            return 0
        value = result_value(client._rpc("Invoke", request, args.timeout))
    if isinstance(value, bytes):
        sys.stdout.buffer.write(value)
    else:
        print(json.dumps(value, indent=2 if args.json else None))
    return 0


def _stream(client, request, timeout):
    import grpc

    from solo.client import translate
    responses = client.stub.InvokeStream(request, metadata=client.metadata, timeout=timeout)
    try:
        yield from responses
    except grpc.RpcError as exc:
        raise translate(exc) from None


def cmd_ls(args) -> int:
    with _client(args) as client:
        services = client.list()
    _emit(args, services, lambda rows: print_table(
        rows, [("NAME", "name"), ("VERSION", "version"), ("STATE", "state"), ("PID", "pid"),
               ("RESTARTS", "restarts"), ("MESSAGE", "message")], empty="no services; deploy one with `solo deploy FILE`"))
    return 0


def cmd_status(args) -> int:
    with _client(args) as client:
        info = client.get(args.name)
    _emit(args, info, print_service)
    return 0


def cmd_stop(args) -> int:
    with _client(args) as client, Progress(f"stopping {args.name}", enabled=not args.json):
        info = client.stop(args.name, remove=args.remove)
    _emit(args, info, lambda i: print(f"{i['name']}: {'removed' if args.remove else i['state']}"))
    return 0


def cmd_metrics(args) -> int:
    with _client(args) as client:
        data = client.metrics()
    _emit(args, data, lambda d: print_table(
        d["services"], [("SERVICE", "service"), ("CALLS", "calls"), ("ERRORS", "errors"), ("IN FLIGHT", "in_flight")],
        empty="no calls yet"))
    return 0


def _event_line(event: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["time_us"] / 1e6))
    payload = json.dumps(event["payload"], sort_keys=True)
    return f"{event['id']:>6}  {when}  {event['tenant']:<12} {event['type']:<22} {event['subject']:<16} {payload}"


def cmd_events(args) -> int:
    filters = dict(tenant=args.tenant or "", types=args.type or (), subject=args.subject or "",
                   since=parse_since(args.since) if args.since else 0.0, after_id=args.after_id or 0)
    with _client(args) as client:
        show = (lambda e: print(json.dumps(e, sort_keys=True), flush=True)) if args.json else \
            (lambda e: print(_event_line(e), flush=True))
        if args.follow:
            for event in client.watch(**filters):
                show(event)
            return 0
        for event in client.events(limit=args.limit, **filters):
            show(event)
    return 0


def cmd_whoami(args) -> int:
    with _client(args) as client:
        data = client.whoami()
    _emit(args, data, lambda d: print(f"tenant {d['tenant']}{' (operator)' if d['operator'] else ''} at {client.address}"))
    return 0


def cmd_health(args) -> int:
    """The gateway's grpc.health.v1 answer, over TLS when it speaks TLS (kubelet's `grpc:` probe is plaintext
    only, hence this command for exec probes). SERVING means ready (what /ready answers 200 to: the registry
    answers, the routes are synced, the event log is writable, not stopping; gateway/health.py). Exit 0 when
    SERVING, 1 when it answers anything else, 5 when it cannot be reached. With --live (liveness): 0 whenever it
    answers at all, SERVING or NOT_SERVING (a gateway that is not ready still serves; restarting it would not
    help)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from solo.client import resolve_target, tls_credentials
    address, _ = resolve_target(args.address, "unused", args.data_dir)  # a health check sends no token
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):  # solo.json of `--host 0.0.0.0`: a listen address, not a destination
        address = f"127.0.0.1:{port}"
    credentials = tls_credentials(args.data_dir, args.tls_ca, args.tls_cert, args.tls_key)
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=args.service),
                                                              timeout=args.timeout)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            reason = "" if status == "SERVING" else \
                f"the gateway answers {status}: not ready (the registry does not answer, the routes are not synced or " \
                "the event log is not writable: /ready on the metrics port says which) or stopping"
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                status, reason = "SERVICE_UNKNOWN", f"the gateway has no health entry {args.service!r}"
            else:
                status, reason = "UNREACHABLE", f"{exc.code().name}: {' '.join((exc.details() or '').split())}"
    ok = status == "SERVING" or (args.live and status == "NOT_SERVING")
    result = {"address": address, "service": args.service, "status": status, "reason": reason}
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif ok:
        print(f"{status} ({address})" if status == "SERVING" else f"alive, {status} ({address}): {reason}")
    else:
        print(f"not serving: {address}: {reason}", file=sys.stderr)
    return 0 if ok else 5 if status == "UNREACHABLE" else 1


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (what was wrong and where to read more), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


UINT32, INT32 = 2**32 - 1, 2**31 - 1


def build_parser() -> argparse.ArgumentParser:
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument("--data-dir", default=os.environ.get("SOLO_DATA_DIR"),
                       help="Solo's data directory (default: SOLO_DATA_DIR or ~/.solo)")
    local.add_argument("--json", action="store_true", help="machine-readable output")
    common = argparse.ArgumentParser(add_help=False, parents=[local])
    common.add_argument("--address", help="gateway host:port (default: from `solo up`, or SOLO_ADDRESS)")
    common.add_argument("--token", help="bearer token (default: the operator token, or SOLO_TOKEN)")
    common.add_argument("--tls-ca", help="CA certificate of a TLS gateway (default SOLO_TLS_CA, or a local --tls up)")
    common.add_argument("--tls-cert", help="client certificate for mutual TLS (default SOLO_TLS_CERT)")
    common.add_argument("--tls-key", help="its private key (default SOLO_TLS_KEY)")

    parser = _Parser(prog="solo", description="Solo: a multi-tenant service runtime on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[local], help="start Solo (a local Ray, the registry and the gateway)")
    up.add_argument("--port", type=int_arg(0, 65535), help="gateway port (default 7070; 0 = any free port)")
    up.add_argument("--host", help="gateway listen address (default 127.0.0.1)")
    up.add_argument("--rest-port", type=int_arg(-1, 65535), help="REST/JSON gateway port (default 7080, any free "
                    "port with --port 0; 0 = any free port, -1 = no REST)")
    up.add_argument("--config", type=Path, help="TOML config file (default <data-dir>/solo.toml if present)")
    up.add_argument("--address", dest="ray_address",
                    help="join this Ray cluster instead of starting a local one (e.g. 10.0.0.5:6379 or auto)")
    up.add_argument("--num-cpus", type=int_arg(1, 1 << 20), help="logical CPUs of the embedded Ray (default: all)")
    up.add_argument("--gateway-processes", type=int_arg(1, 64), help="gateway processes sharing the port with "
                    "SO_REUSEPORT (default [gateway] processes, 1); more than one helps only with a core for each")
    up.add_argument("--no-example", action="store_true", help="do not deploy the example echo service")
    up.add_argument("--foreground", action="store_true", help="run in this process until Ctrl-C")
    up.add_argument("--tls", action="store_true", help="serve TLS only (creates a CA and certificate on first use)")
    up.add_argument("--require-client-cert", action="store_true",
                    help="mutual TLS: clients need a certificate from `solo certs issue` (implies --tls)")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", parents=[local], help="stop Solo and every service (events stay on disk)")
    down.set_defaults(func=cmd_down)

    deploy = sub.add_parser("deploy", parents=[common], help="deploy a service from a Python file")
    deploy.add_argument("file", help="the service's Python file")
    deploy.add_argument("--name", help="service name (default: the file name, e.g. counter)")
    deploy.add_argument("--version", help="version label (default: 1, 2, ... per deploy)")
    deploy.add_argument("--class", dest="class_name", help="the class to serve when the file defines several")
    deploy.add_argument("--cpus", type=float_arg(0), help="logical CPUs for Ray's scheduler (default 0)")
    deploy.add_argument("--gpus", type=float_arg(0), help="GPUs")
    deploy.add_argument("--memory", help="memory reservation, e.g. 512MiB or 2GB")
    deploy.add_argument("--resource", action="append", metavar="NAME=AMOUNT", help="custom Ray resource")
    deploy.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable")
    deploy.add_argument("--config", help="JSON object handed to the service as self.context.config")
    deploy.add_argument("--label", action="append", metavar="KEY=VALUE", help="label")
    deploy.add_argument("--allow-egress", action="append", metavar="HOST:PORT",
                        help="a TCP destination the service may connect to (repeatable); the operator must allow it "
                        "for your tenant ([runtime] tenant_egress). Default: no network")
    deploy.add_argument("--secret", action="append", metavar="KEY",
                        help="a vault secret handed to the service as self.context.secrets[KEY] at each start "
                        "(repeatable; `solo secrets put KEY` first; your token needs secrets.read on it)")
    deploy.add_argument("--concurrency", type=int_arg(1, UINT32), help="concurrent calls of sync methods (default 1)")
    deploy.add_argument("--max-restarts", type=int_arg(0, INT32), help="restarts after crashes before FAILED")
    deploy.add_argument("--replace", action="store_true", help="replace a running service with a different spec")
    deploy.set_defaults(func=cmd_deploy)

    swap = sub.add_parser("swap", parents=[common], help="hot-swap a running service to new code, state included")
    swap.add_argument("name", help="the running service")
    swap.add_argument("file", help="the new version's Python file")
    swap.add_argument("--version", help="version label (default: the next number)")
    swap.add_argument("--class", dest="class_name", help="the class to serve when the file defines several")
    swap.add_argument("--watch", type=float_arg(0), help="seconds to keep the old version ready and roll back "
                      "automatically (default [swap] watch_seconds, 30; 0 = none)")
    swap.set_defaults(func=cmd_swap)
    rollback = sub.add_parser("rollback", parents=[common], help="go back to the previous (or an older) version")
    rollback.add_argument("name")
    rollback.add_argument("--to", metavar="VERSION", help="a kept past version (default: the previous one)")
    rollback.set_defaults(func=cmd_rollback)

    call = sub.add_parser("call", parents=[common], help="call a method: solo call counter incr '{\"by\": 2}'")
    call.add_argument("service")
    call.add_argument("method")
    call.add_argument("args", nargs="?", help="JSON: an object (keyword args), an array (positional) or a value")
    call.add_argument("--stream", action="store_true", help="print each streamed item on its own line")
    call.add_argument("--timeout", type=float_arg(0.001), help="deadline in seconds")
    call.set_defaults(func=cmd_call)

    ls = sub.add_parser("ls", parents=[common], help="list your services")
    ls.set_defaults(func=cmd_ls)
    status = sub.add_parser("status", parents=[common], help="show one service in detail")
    status.add_argument("name")
    status.set_defaults(func=cmd_status)
    stop = sub.add_parser("stop", parents=[common], help="stop a service (its stop hook runs)")
    stop.add_argument("name")
    stop.add_argument("--remove", action="store_true", help="forget the service instead of keeping it STOPPED")
    stop.set_defaults(func=cmd_stop)
    metrics = sub.add_parser("metrics", parents=[common], help="call counters of your services")
    metrics.set_defaults(func=cmd_metrics)
    add_security_parsers(sub, local, common)
    add_discovery_parsers(sub, common)
    cli_logs.add_parsers(sub, local, common)
    cli_secrets.add_parsers(sub, local, common)
    cli_config.add_parsers(sub, local, common)
    events = sub.add_parser("events", parents=[common], help="the event history (--follow for live)")
    events.add_argument("--tenant", help="operator only: one tenant's events (default: all, or your own)")
    events.add_argument("--type", action="append", help="event type, e.g. service.crashed (repeatable)")
    events.add_argument("--subject", help="e.g. a service name")
    events.add_argument("--since", help="an ISO time (2026-11-27T10:00) or an age: 30s, 10m, 2h, 1d")
    events.add_argument("--after-id", type=int_arg(0, 2**64 - 1), help="only events after this id (resume)")
    events.add_argument("--limit", type=int_arg(1, 10**9), default=1000, help="at most this many (default 1000)")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.set_defaults(func=cmd_events)

    health = sub.add_parser("health", parents=[common], help="is the gateway serving? (grpc.health.v1 over "
                            "TLS too; exit 0 = SERVING, for probes)")
    health.add_argument("--service", default="", help="a name in the gateway's health table (default: the gateway)")
    health.add_argument("--timeout", type=float_arg(0.001), default=5.0, help="seconds to wait (default 5)")
    health.add_argument("--live", action="store_true", help="liveness: exit 0 whenever the gateway answers, ready "
                        "(SERVING) or not (NOT_SERVING); without it, exit 0 only when ready")
    health.set_defaults(func=cmd_health)

    whoami = sub.add_parser("whoami", parents=[common], help="show the tenant your token acts for")
    whoami.set_defaults(func=cmd_whoami)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SoloError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
