"""`solo tokens`, `solo keys` and `solo certs`: capability tokens, root keys and TLS certificates
(see docs/SECURITY.md). Attenuate, inspect, keys and certs work locally, without a server call."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from solo.cli_output import client as _client
from solo.cli_output import emit as _emit
from solo.cli_output import parse_duration, print_table
from solo.errors import InvalidRequest

RIGHTS_HELP = ("deploy, swap, stop, invoke, discover, read_events, watch, logs, secrets.read, secrets.write, mint, "
               "config")


def cmd_tokens_mint(args) -> int:
    ttl = parse_duration(args.ttl) if args.ttl else 0
    with _client(args) as client:
        minted = client.mint(args.tenant, args.description or "", rights=args.right or (), ttl_seconds=ttl,
                             operator=args.operator)
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
        try:
            key = biscuit.PublicKey.from_bytes(bytes.fromhex(given), ALGORITHM)
        except ValueError as exc:
            raise InvalidRequest(f"--public-key is not a root public key ({exc}); pass the hex string `solo keys list` "
                                 "shows on the Solo machine") from None
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
    if args.certs_command == "node":
        issued = certs.issue_node(directory, args.name, args.host, days or certs.NODE_DAYS,
                                  Path(args.out) if args.out else None, force=args.force)
        made = {"dir": str(issued.cert.parent), "cert": str(issued.cert), "key": str(issued.key),
                "expires": issued.not_after.isoformat()}
        _emit(args, made, lambda d: print(
            f"node certificate in {d['dir']} (ca.crt, node.crt, node.key 0600), expires {d['expires'][:10]}\n"
            "put that directory on the node at [tls] node_dir, and set [tls] hosts = \"remote\" (see "
            "docs/OPERATIONS.md, Running on a Ray cluster)"))
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


def add_security_parsers(sub, local, common) -> None:
    configured = argparse.ArgumentParser(add_help=False, parents=[local])  # the local commands read the config
    configured.add_argument("--config", help="TOML config file (default <data-dir>/solo.toml if present)")
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
    certs_local = argparse.ArgumentParser(add_help=False, parents=[configured])
    certs_local.add_argument("--days", type=int, help="validity (default: CA 1825, server 365, client 90, node 365)")
    cinit = certs_sub.add_parser("init", parents=[certs_local], help="create the CA and the gateway's certificate")
    cinit.add_argument("--host", action="append", default=[],
                       help="another name or IP clients use to reach the gateway (repeatable)")
    cinit.add_argument("--force", action="store_true", help="replace an existing CA")
    cinit.set_defaults(func=cmd_certs)
    issue = certs_sub.add_parser("issue", parents=[certs_local], help="a client certificate")
    issue.add_argument("name", help="who it is for (a name: letters, digits, -)")
    issue.add_argument("--tenant", help="bind it to a tenant: only that tenant's tokens work over it")
    issue.set_defaults(func=cmd_certs)
    node = certs_sub.add_parser("node", parents=[certs_local],
                                help="a node's certificate for the gateway-host call channel ([tls] hosts)")
    node.add_argument("name", help="the node's name (letters, digits, -)")
    node.add_argument("--host", action="append", default=[], help="a name or IP of the node (repeatable)")
    node.add_argument("--out", help="write ca.crt, node.crt, node.key here (default <tls dir>/nodes/NAME)")
    node.add_argument("--force", action="store_true", help="replace a node certificate already there")
    node.set_defaults(func=cmd_certs)
    keys = sub.add_parser("keys", parents=[local], help="the root keys that sign tokens (on the Solo machine)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    keys_sub.add_parser("list", parents=[configured], help="key ids, states and public keys").set_defaults(func=cmd_keys)
    rotate = keys_sub.add_parser("rotate", parents=[configured], help="sign new tokens with a new key")
    rotate.add_argument("--cutoff", help="how long old tokens keep working, e.g. 7d (default [security] key_cutoff_days)")
    rotate.set_defaults(func=cmd_keys)
