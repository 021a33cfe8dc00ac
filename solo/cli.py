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

from solo.cli_output import (Progress, parse_bytes, parse_duration, parse_pairs, parse_since, print_service,
                             print_table)
from solo.errors import InvalidRequest, SoloError

EXIT_CODES = {"INVALID_ARGUMENT": 2, "NOT_FOUND": 3, "UNAUTHENTICATED": 4, "PERMISSION_DENIED": 4,
              "UNAVAILABLE": 5, "DEADLINE_EXCEEDED": 6}


def _client(args):
    from solo.client import SoloClient
    return SoloClient(args.address, args.token, data_dir=args.data_dir, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                      tls_key=args.tls_key)


def _emit(args, value, human) -> None:
    if args.json:
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        human(value)


def cmd_up(args) -> int:
    from solo.cli_up import up
    return up(args)


def cmd_down(args) -> int:
    from solo.cli_up import down
    return down(args)


def cmd_deploy(args) -> int:
    config = json.loads(args.config) if args.config else None
    if config is not None and not isinstance(config, dict):
        raise InvalidRequest("--config must be a JSON object, e.g. '{\"greeting\": \"hi\"}'")
    spec = dict(version=args.version or "", class_name=args.class_name or "", num_cpus=args.cpus or 0.0,
                num_gpus=args.gpus or 0.0, memory=parse_bytes(args.memory) if args.memory else 0,
                resources={k: float(v) for k, v in parse_pairs(args.resource, "--resource").items()},
                env=parse_pairs(args.env, "--env"), config=config, labels=parse_pairs(args.label, "--label"),
                max_concurrency=args.concurrency or 0, max_restarts=args.max_restarts)
    with _client(args) as client, Progress(f"deploying {args.file}", enabled=not args.json):
        info = client.deploy(args.file, args.name, replace=args.replace, **spec)
    _emit(args, info, print_service)
    return 0


def cmd_call(args) -> int:
    from solo._proto import solo_pb2 as pb
    from solo.client import result_value
    if args.args is not None:
        try:
            json.loads(args.args)
        except ValueError as exc:
            raise InvalidRequest(f"arguments are not valid JSON ({exc}); e.g. '{{\"by\": 2}}' or '[1, 2]' or '\"text\"'")
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


def cmd_tokens_mint(args) -> int:
    with _client(args) as client:
        minted = client.mint(args.tenant, args.description or "", rights=args.right or (),
                             ttl_seconds=parse_duration(args.ttl) if args.ttl else 0, operator=args.operator)
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(minted["expires_at"]))
    _emit(args, minted, lambda d: print(
        f"{d['token']}\n(token for tenant {d['tenant']}, rights {', '.join(d['rights'])}, expires {expires}; "
        f"pass it as --token or SOLO_TOKEN; revoke with `solo tokens revoke {d['revocation_id'][:16]}`)"))
    return 0


def _read_token(args) -> str:
    token = args.token or os.environ.get("SOLO_TOKEN") or ""
    if token == "-" or (not token and not sys.stdin.isatty()):
        token = sys.stdin.read()
    if not token.strip():
        raise InvalidRequest("give the token to work on: --token TOKEN, --token - for standard input, or SOLO_TOKEN")
    return token.strip()


def _public_keys(args):
    """Public keys for verifying tokens offline: --public-key HEX, SOLO_PUBLIC_KEY, or the data dir's keys."""
    import biscuit_auth as biscuit

    from solo.security.keys import ALGORITHM, KeyRing

    given = args.public_key or os.environ.get("SOLO_PUBLIC_KEY")
    if given:
        key = biscuit.PublicKey.from_bytes(bytes.fromhex(given), ALGORITHM)
        return lambda key_id: key
    directory = Path(args.data_dir or os.environ.get("SOLO_DATA_DIR") or "~/.solo").expanduser() / "keys"
    if not (directory / "keys.json").exists():
        raise InvalidRequest(f"no public key: pass --public-key (from `solo keys public` on the Solo machine) or "
                             f"--data-dir of a Solo data directory ({directory} has no keys.json)")
    ring = KeyRing(directory)
    return lambda key_id: ring.public_key(key_id)


def cmd_tokens_attenuate(args) -> int:
    from solo.security.capabilities import attenuate

    rights = list(args.right) if args.right else None
    if args.read_only:
        from solo.security.capabilities import READ_ONLY
        rights = [r for r in (rights or READ_ONLY) if r in READ_ONLY]
        if not rights:  # never fail open into "no rights check"
            raise InvalidRequest(f"none of the --right values is read-only ({', '.join(READ_ONLY)})")
    narrower = attenuate(_read_token(args), _public_keys(args), services=args.service, methods=args.method,
                         rights=rights, ttl_seconds=parse_duration(args.ttl) if args.ttl else None,
                         secrets=args.secret)
    _emit(args, {"token": narrower}, lambda d: print(d["token"]))
    return 0


def cmd_tokens_inspect(args) -> int:
    from solo.security.capabilities import inspect as inspect_token

    info = inspect_token(_read_token(args))

    def human(d):
        print(f"key id: {d['key_id']}")
        for i, (source, rid) in enumerate(zip(d["blocks"], d["revocation_ids"])):
            print(f"block {i} (revocation id {rid}):")
            print("  " + "\n  ".join(line for line in source.splitlines() if line.strip()))
    _emit(args, info, human)
    return 0


def cmd_tokens_revoke(args) -> int:
    target = args.target
    hexadecimal = all(c in "0123456789abcdef" for c in target)
    with _client(args) as client:
        if hexadecimal and 16 <= len(target) < 128:  # the ID `solo tokens list` shows: a prefix
            found = [t["revocation_id"] for t in client.list_tokens() if t["revocation_id"].startswith(target)]
            if len(found) != 1:
                raise InvalidRequest(f"{len(found)} of your tokens have an id starting with {target}; give more of it")
            target = found[0]
        if len(target) == 128 and hexadecimal:
            result = client.revoke_token(target, reason=args.reason or "")
        else:
            result = client.revoke_token(token=target if target != "-" else sys.stdin.read().strip(),
                                         reason=args.reason or "")
    _emit(args, result, lambda d: print(f"revoked {d['revocation_id'][:16]}... (tenant {d['tenant']}) and every "
                                        "token derived from it"))
    return 0


def cmd_tokens_list(args) -> int:
    with _client(args) as client:
        found = client.list_tokens(args.tenant or "")
    for t in found:
        t["id"] = t["revocation_id"][:16]
        t["expires"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t["expires_at"]))
        t["state"] = "revoked" if t["revoked"] else "expired" if t["expires_at"] < time.time() else "valid"
        t["rights_text"] = "operator" if t["operator"] else ",".join(t["rights"])
    _emit(args, found, lambda d: print_table(d, [("ID", "id"), ("TENANT", "tenant"), ("STATE", "state"),
                                                 ("EXPIRES", "expires"), ("RIGHTS", "rights_text"),
                                                 ("DESCRIPTION", "description")], empty="no tokens minted"))
    return 0


def cmd_certs(args) -> int:
    from solo.config import load_config
    from solo.security import certs

    config = load_config(Path(args.config) if args.config else None, data_dir=args.data_dir)
    directory = config.tls_dir
    days = certs.check_days(args.days) if args.days else None
    if args.certs_command == "init":
        ca = certs.init_ca(directory, days or certs.CA_DAYS, force=args.force)
        server = certs.issue_server(directory, args.host + [config.gateway.host], days or certs.SERVER_DAYS)
        made = {"ca": str(ca.cert), "ca_key": str(ca.key), "server": str(server.cert), "server_key": str(server.key),
                "expires": server.not_after.isoformat()}
        _emit(args, made, lambda d: print(
            f"CA {d['ca']} (its key {d['ca_key']}: keep it private)\ngateway certificate {d['server']}\n"
            f"start with `solo up --tls` (or --require-client-cert); clients pass --tls-ca {d['ca']}"))
        return 0
    issued = certs.issue_client(directory, args.name, args.tenant, days or certs.CLIENT_DAYS)
    made = {"cert": str(issued.cert), "key": str(issued.key), "tenant": args.tenant or "",
            "expires": issued.not_after.isoformat(), "ca": str(directory / "ca.crt")}
    _emit(args, made, lambda d: print(
        f"client certificate {d['cert']}, key {d['key']} (0600), expires {d['expires'][:10]}"
        + (f", bound to tenant {d['tenant']}" if d["tenant"] else "")
        + f"\nuse: --tls-ca {d['ca']} --tls-cert {d['cert']} --tls-key {d['key']} (or SOLO_TLS_CA/CERT/KEY)"))
    return 0


def cmd_keys(args) -> int:
    from solo.config import load_config
    from solo.security.keys import KeyRing

    config = load_config(Path(args.config) if args.config else None, data_dir=args.data_dir)
    if not (config.data_dir / "keys" / "keys.json").exists():
        raise InvalidRequest(f"no root keys in {config.data_dir}; `solo up` creates them on first start")
    ring = KeyRing(config.data_dir / "keys")
    if args.keys_command == "rotate":
        cutoff = parse_duration(args.cutoff, "--cutoff") if args.cutoff else config.security.key_cutoff_days * 86400
        new_id = ring.rotate(cutoff)
        print(f"key {new_id} signs new tokens; tokens of older keys work for {cutoff / 86400:g} more days")
        return 0
    keys = [{"key_id": k.key_id, "public": k.public_hex, "active": k.key_id == ring.active,
             "valid_until": k.valid_until} for k in ring.keys()]
    _emit(args, keys, lambda d: print_table(
        [{**k, "state": "active" if k["active"] else "accepted until " + time.strftime(
            "%Y-%m-%d %H:%M", time.gmtime(k["valid_until"])) if k["valid_until"] else "accepted"} for k in d],
        [("KEY", "key_id"), ("STATE", "state"), ("PUBLIC KEY (for --public-key)", "public")]))
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


RIGHTS_HELP = "deploy, swap, stop, invoke, discover, read_events, watch, secrets.read, secrets.write, mint"


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

    parser = argparse.ArgumentParser(prog="solo", description="Solo: a multi-tenant service runtime on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[local], help="start Solo (a local Ray, the registry and the gateway)")
    up.add_argument("--port", type=int, help="gateway port (default 7070; 0 = any free port)")
    up.add_argument("--host", help="gateway listen address (default 127.0.0.1)")
    up.add_argument("--config", type=Path, help="TOML config file (default <data-dir>/solo.toml if present)")
    up.add_argument("--address", dest="ray_address",
                    help="join this Ray cluster instead of starting a local one (e.g. 10.0.0.5:6379 or auto)")
    up.add_argument("--num-cpus", type=int, help="logical CPUs of the embedded Ray (default: all)")
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
    deploy.add_argument("--cpus", type=float, help="logical CPUs for Ray's scheduler (default 0)")
    deploy.add_argument("--gpus", type=float, help="GPUs")
    deploy.add_argument("--memory", help="memory reservation, e.g. 512MiB or 2GB")
    deploy.add_argument("--resource", action="append", metavar="NAME=AMOUNT", help="custom Ray resource")
    deploy.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable")
    deploy.add_argument("--config", help="JSON object handed to the service as self.context.config")
    deploy.add_argument("--label", action="append", metavar="KEY=VALUE", help="label")
    deploy.add_argument("--concurrency", type=int, help="concurrent calls of sync methods (default 1)")
    deploy.add_argument("--max-restarts", type=int, help="restarts after crashes before FAILED")
    deploy.add_argument("--replace", action="store_true", help="replace a running service with a different spec")
    deploy.set_defaults(func=cmd_deploy)

    call = sub.add_parser("call", parents=[common], help="call a method: solo call counter incr '{\"by\": 2}'")
    call.add_argument("service")
    call.add_argument("method")
    call.add_argument("args", nargs="?", help="JSON: an object (keyword args), an array (positional) or a value")
    call.add_argument("--stream", action="store_true", help="print each streamed item on its own line")
    call.add_argument("--timeout", type=float, help="deadline in seconds")
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
    tokens = sub.add_parser("tokens", parents=[common], help="capability tokens: mint, attenuate, inspect, revoke, list")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    mint = tokens_sub.add_parser("mint", parents=[common], help="mint a token for a tenant")
    mint.add_argument("tenant")
    mint.add_argument("--description")
    mint.add_argument("--right", action="append", help=f"a right to grant (repeatable; default all): {RIGHTS_HELP}")
    mint.add_argument("--ttl", help="lifetime, e.g. 12h or 30d (default [security] token_ttl_days)")
    mint.add_argument("--operator", action="store_true", help="an operator token (operator only)")
    mint.set_defaults(func=cmd_tokens_mint)
    att = tokens_sub.add_parser("attenuate", parents=[common],
                                help="derive a narrower token locally (no server call)")
    att.add_argument("--service", action="append", help="only this service (repeatable)")
    att.add_argument("--method", action="append", help="only this method, for invoke (repeatable)")
    att.add_argument("--right", action="append", help=f"only this right (repeatable): {RIGHTS_HELP}")
    att.add_argument("--read-only", action="store_true", help="only discover, read_events, watch, secrets.read")
    att.add_argument("--secret", action="append", help="only secret keys matching this (exact, or a prefix like db/*)")
    att.add_argument("--ttl", help="expire sooner, e.g. 1h")
    att.add_argument("--public-key", help="root public key (hex, `solo keys`); default SOLO_PUBLIC_KEY or --data-dir")
    att.set_defaults(func=cmd_tokens_attenuate)
    insp = tokens_sub.add_parser("inspect", parents=[common], help="show a token's blocks (no server call)")
    insp.set_defaults(func=cmd_tokens_inspect)
    rev = tokens_sub.add_parser("revoke", parents=[common], help="revoke a token and everything derived from it")
    rev.add_argument("target", help="a token's ID (from `solo tokens list`: 16+ hex characters of its revocation "
                                    "id), a full revocation id, or the token itself (- = stdin)")
    rev.add_argument("--reason")
    rev.set_defaults(func=cmd_tokens_revoke)
    lst = tokens_sub.add_parser("list", parents=[common], help="tokens minted for your tenant (operator: all)")
    lst.add_argument("--tenant", help="operator only: one tenant's tokens")
    lst.set_defaults(func=cmd_tokens_list)
    certs = sub.add_parser("certs", parents=[local], help="TLS: a private CA, the gateway's and clients' certificates")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    certs_local = argparse.ArgumentParser(add_help=False, parents=[local])
    certs_local.add_argument("--config", help="TOML config file (default <data-dir>/solo.toml if present)")
    certs_local.add_argument("--days", type=int, help="validity (default: CA 1825, server 365, client 90)")
    cinit = certs_sub.add_parser("init", parents=[certs_local], help="create the CA and the gateway's certificate")
    cinit.add_argument("--host", action="append", default=[],
                       help="another name or IP clients use to reach the gateway (repeatable)")
    cinit.add_argument("--force", action="store_true", help="replace an existing CA")
    cinit.set_defaults(func=cmd_certs)
    issue = certs_sub.add_parser("issue", parents=[certs_local], help="a client certificate")
    issue.add_argument("name", help="who it is for (a name: letters, digits, -)")
    issue.add_argument("--tenant", help="bind it to a tenant: only that tenant's tokens work over it")
    issue.set_defaults(func=cmd_certs)
    keys = sub.add_parser("keys", parents=[local], help="the root keys that sign tokens (on the Solo machine)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    keys_local = argparse.ArgumentParser(add_help=False, parents=[local])
    keys_local.add_argument("--config", help="TOML config file (default <data-dir>/solo.toml if present)")
    keys_sub.add_parser("list", parents=[keys_local], help="key ids, states and public keys").set_defaults(func=cmd_keys)
    rotate = keys_sub.add_parser("rotate", parents=[keys_local], help="sign new tokens with a new key")
    rotate.add_argument("--cutoff", help="how long old tokens keep working, e.g. 7d (default [security] key_cutoff_days)")
    rotate.set_defaults(func=cmd_keys)
    events = sub.add_parser("events", parents=[common], help="the event history (--follow for live)")
    events.add_argument("--tenant", help="operator only: one tenant's events (default: all, or your own)")
    events.add_argument("--type", action="append", help="event type, e.g. service.crashed (repeatable)")
    events.add_argument("--subject", help="e.g. a service name")
    events.add_argument("--since", help="an ISO time (2026-11-27T10:00) or an age: 30s, 10m, 2h, 1d")
    events.add_argument("--after-id", type=int, help="only events after this id (resume)")
    events.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.set_defaults(func=cmd_events)

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
