"""`solo config show|reload`: the configuration in force, and reloading it from its file (operator)."""
from __future__ import annotations

import time
import tomllib

from solo.cli_output import client as _client
from solo.cli_output import emit as _emit


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds)) if seconds else "unknown"


def cmd_config_show(args) -> int:
    with _client(args) as client:
        found = client.config()
    if args.json:
        _emit(args, {"path": found["path"], "loaded_at": found["loaded_at"], "config": tomllib.loads(found["toml"])},
              None)
        return 0
    print(f"# Solo's configuration in force, (re)loaded {_when(found['loaded_at'])} from "
          f"{found['path'] or 'the defaults'} and the flags of `solo up`")
    print(found["toml"], end="")
    return 0


def cmd_config_reload(args) -> int:
    with _client(args) as client:
        result = client.reload_config()

    def human(r: dict) -> None:
        print(f"configuration reloaded ({_when(r['loaded_at'])})")
        print(f"  in force now:  {', '.join(r['changed']) or 'nothing changed'}")
        if r["needs_restart"]:
            print(f"  left as it was until the next `solo up` (cannot change live): {', '.join(r['needs_restart'])}")
    _emit(args, result, human)
    return 0


def add_parsers(sub, local, common) -> None:
    """Add this module's commands to the `solo` parser (cli.build_parser)."""
    config = sub.add_parser("config", help="the configuration in force; reload it from its file (operator)")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[common], help="the configuration in force as TOML (--json: as JSON), "
                              "with the file it came from; paths to secret files are shown, never their content")
    show.set_defaults(func=cmd_config_show)
    reload = actions.add_parser("reload", parents=[common], help="read the file `solo up` was started with again "
                                "and apply what can change live (quotas, rates, retention, egress); the flags of "
                                "`solo up` still win; a bad file changes nothing. SIGHUP to `solo up` does the same")
    reload.set_defaults(func=cmd_config_reload)


__all__ = ["add_parsers"]
