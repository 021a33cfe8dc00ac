"""`solo secrets put|get|ls|rm|rotate`: the vault."""
from __future__ import annotations

import base64
import getpass
import sys
import time

from solo.cli_output import client as _client
from solo.cli_output import emit as _emit
from solo.cli_output import int_arg, print_table
from solo.errors import InvalidRequest


def _value(args) -> bytes:
    """The value from the argument, --file, or stdin (a prompt without echo on a terminal)."""
    if args.value is not None and args.file:
        raise InvalidRequest("give the value as an argument or with --file, not both")
    if args.value is not None:
        return args.value.encode()
    if args.file:
        try:
            with open(args.file, "rb") as f:
                return f.read()
        except OSError as exc:
            raise InvalidRequest(f"cannot read {args.file}: {exc.strerror}") from None
    if sys.stdin.isatty():
        return getpass.getpass(f"value of {args.key}: ").encode()
    return sys.stdin.buffer.read()


def cmd_put(args) -> int:
    value = _value(args)
    with _client(args) as client:
        result = client.put_secret(args.key, value)
    _emit(args, result, lambda r: print(f"{r['key']}: version {r['version']}"))
    return 0


def cmd_get(args) -> int:
    with _client(args) as client:
        result = client.get_secret(args.key, args.version or 0)
    value = result.pop("value")
    if args.json:
        try:
            result["value"] = value.decode()
        except UnicodeDecodeError:
            result["value_base64"] = base64.b64encode(value).decode()
        _emit(args, result, print)
        return 0
    sys.stdout.buffer.write(value)  # as stored: pipe it where it is needed
    if sys.stdout.isatty() and not value.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    return 0


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else ""


def cmd_ls(args) -> int:
    with _client(args) as client:
        found = client.list_secrets(args.prefix or "")
    _emit(args, found, lambda rows: print_table(
        [{**r, "updated": _when(r["updated_at"])} for r in rows],
        [("KEY", "key"), ("VERSION", "version"), ("KEPT", "versions"), ("UPDATED", "updated")],
        empty="no secrets" + (f" under {args.prefix!r}" if args.prefix else "")))
    return 0


def cmd_rm(args) -> int:
    with _client(args) as client:
        versions = client.delete_secret(args.key)
    _emit(args, {"key": args.key, "versions": versions},
          lambda r: print(f"removed {r['key']} ({r['versions']} version{'s' if r['versions'] != 1 else ''})"))
    return 0


def cmd_rotate(args) -> int:
    with _client(args) as client:
        result = client.rotate_master_key()
    _emit(args, result, lambda r: print(f"new master key {r['key_id']}; {r['rewrapped']} data keys re-wrapped"))
    return 0


def add_parsers(sub, local, common) -> None:
    """Add this module's commands to the `solo` parser (cli.build_parser)."""
    secrets = sub.add_parser("secrets", parents=[common], help="the vault: your tenant's secrets, encrypted at rest")
    actions = secrets.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    put = actions.add_parser("put", parents=[common], help="store a new version of a secret")
    put.add_argument("key", help="e.g. db/password (letters, digits, _ . / : -)")
    put.add_argument("value", nargs="?", help="the value (visible in your shell history: prefer --file or stdin)")
    put.add_argument("--file", help="read the value from this file")
    put.set_defaults(func=cmd_put)
    get = actions.add_parser("get", parents=[common], help="print a secret's value (newest version by default)")
    get.add_argument("key")
    get.add_argument("--version", type=int_arg(1, 2**32 - 1), help="this version instead of the newest")
    get.set_defaults(func=cmd_get)
    ls = actions.add_parser("ls", parents=[common], help="your secrets' keys and versions (never values)")
    ls.add_argument("prefix", nargs="?", help="only keys starting with this, e.g. db/")
    ls.set_defaults(func=cmd_ls)
    rm = actions.add_parser("rm", parents=[common], help="remove a secret (every version)")
    rm.add_argument("key")
    rm.set_defaults(func=cmd_rm)
    rotate = actions.add_parser("rotate", parents=[common], help="operator only: a new master key (every data key "
                                "re-wrapped, the old key deleted)")
    rotate.set_defaults(func=cmd_rotate)


__all__ = ["add_parsers"]
