"""`solo discover`, `solo grant` and `solo grants`: finding services and exporting them to other tenants."""
from __future__ import annotations

from solo.cli_output import client as _client
from solo.cli_output import emit as _emit
from solo.cli_output import parse_pairs, print_table


def cmd_discover(args) -> int:
    labels = parse_pairs(args.label, "--label")
    with _client(args) as client:
        found = client.discover(args.name or "", owner=args.owner or "", labels=labels)
    for endpoint in found:
        endpoint["labels_text"] = ",".join(f"{k}={v}" for k, v in sorted(endpoint["labels"].items()))
    _emit(args, found, lambda rows: print_table(rows, [
        ("OWNER", "owner"), ("NAME", "name"), ("KIND", "kind"), ("VERSION", "version"), ("STATE", "state"),
        ("ADDRESS", "address"), ("LABELS", "labels_text")], empty="nothing found"))
    return 0


def cmd_grant(args) -> int:
    with _client(args) as client:
        if args.revoke:
            client.revoke_grant(args.name, args.tenant)
        else:
            client.grant(args.name, args.tenant)
    done = {"service": args.name, "to_tenant": args.tenant, "granted": not args.revoke}
    _emit(args, done, lambda d: print(
        f"{d['service']}: {'exported to' if d['granted'] else 'no longer exported to'} tenant {d['to_tenant']}"
        + (f" (it calls it as <your tenant>/{d['service']})" if d["granted"] else "")))
    return 0


def cmd_grants(args) -> int:
    with _client(args) as client:
        grants = client.grants()

    def show(g: dict) -> None:
        print_table(g["given"], [("SERVICE", "service"), ("EXPORTED TO", "to_tenant")], empty="you export nothing")
        print()
        print_table(g["received"], [("OWNER", "owner"), ("SERVICE", "service")], empty="nothing is exported to you")
    _emit(args, grants, show)
    return 0


def add_discovery_parsers(sub, common) -> None:
    discover = sub.add_parser("discover", parents=[common],
                              help="find your services and registered endpoints (--owner T: what T exported to you)")
    discover.add_argument("name", nargs="?", help="a service name (default: all of them)")
    discover.add_argument("--owner", help="the tenant that exported it to you")
    discover.add_argument("--label", action="append", metavar="KEY=VALUE", help="must have this label (repeatable)")
    discover.set_defaults(func=cmd_discover)
    grant = sub.add_parser("grant", parents=[common], help="export one of your services to another tenant")
    grant.add_argument("name")
    grant.add_argument("tenant")
    grant.add_argument("--revoke", action="store_true", help="take the grant back")
    grant.set_defaults(func=cmd_grant)
    grants = sub.add_parser("grants", parents=[common], help="what you export, and what is exported to you")
    grants.set_defaults(func=cmd_grants)
