"""`solo logs NAME [-f] [--since] [--tail]`: a service's output."""
from __future__ import annotations

import json
import time

from solo.cli_output import client as _client
from solo.cli_output import int_arg, parse_since


def _line(line: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(line["time"]))
    return f"{when}.{int(line['time'] % 1 * 1000):03d}  {line['stream']:<6} v{line['version']:<6} {line['text']}"


def cmd_logs(args) -> int:
    since = 0.0
    if args.since:  # an age for the server; a time not yet reached (or "0s") asks for nothing kept so far
        since = max(1e-6, time.time() - parse_since(args.since))
    show = (lambda ln: print(json.dumps(ln, sort_keys=True), flush=True)) if args.json else \
        (lambda ln: print(_line(ln), flush=True))
    with _client(args) as client:
        lines = client.logs(args.name, follow=args.follow, since_seconds=since, tail=args.tail or 0)
        try:
            for line in lines:
                show(line)
        except KeyboardInterrupt:  # the way to end -f
            pass
        finally:
            lines.close()
    return 0


def add_parsers(sub, local, common) -> None:
    """Add this module's commands to the `solo` parser (cli.build_parser)."""
    logs = sub.add_parser("logs", parents=[common], help="a service's output (stdout, stderr and Solo's notes); "
                          "-f to follow")
    logs.add_argument("name", help="one of your services (a stopped one's logs are kept; a removed one's are not)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("--since", help="only lines written since: an age (30s, 10m, 2h, 1d) or an ISO time")
    logs.add_argument("--tail", type=int_arg(0, 100_000), help="only the newest N lines (then new ones with -f)")
    logs.set_defaults(func=cmd_logs)


__all__ = ["add_parsers", "cmd_logs"]
