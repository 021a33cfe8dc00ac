"""Generate docs/API.md from proto/solo/v1/solo.proto (the public wire contract).

    python scripts/gen_api_docs.py           # rewrite docs/API.md
    python scripts/gen_api_docs.py --check   # exit 1 if docs/API.md is stale

The proto text is parsed here (no protoc needed): services, rpcs, messages, enums, fields with
their types, and the `//` comments before or after each of them. The status table is rendered
from solo.gateway.status.STATUS_BY_CODE, solo.errors and solo.cli.EXIT_CODES so it cannot drift.
tests/test_docs.py fails when docs/API.md is stale.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "solo" / "v1" / "solo.proto"
OUTPUT = ROOT / "docs" / "API.md"

# What each Solo error code means for a caller. Every code in STATUS_BY_CODE needs an entry
# (tests/test_docs.py checks), so a new code cannot reach the docs without an explanation.
CODE_MEANINGS = {
    "INVALID_ARGUMENT": "The request is wrong: bad name, syntax error in the source (with file and line), "
                        "no or several service classes, unknown resource, arguments that are not JSON or "
                        "do not fit the method's signature, a streaming method called unary, request bytes that are "
                        "not a valid message of the RPC (answered before authentication), event `since_us`/`until_us` "
                        "outside years 1-9999, a config nested deeper than 64 levels. Fix the request. (An "
                        "`after_id` past every event id is not an error: it finds nothing.)",
    "UNAUTHENTICATED": "No `authorization` metadata, a malformed one, or an unknown token.",
    "PERMISSION_DENIED": "The token is valid but may not do this (only the operator token may mint tokens).",
    "NOT_FOUND": "No such service for your tenant (another tenant's service looks exactly the same), "
                 "or no such method on the service.",
    "ALREADY_EXISTS": "A service with that name runs a different spec; deploy with `replace` or pick another name.",
    "FAILED_PRECONDITION": "Valid but not possible now: no node could ever hold the requested resources, "
                           "or Ray could not place the host within `schedule_timeout_seconds`.",
    "RESOURCE_EXHAUSTED": "A limit was reached (services per tenant).",
    "UNAVAILABLE": "The service is starting, restarting, stopped, failed or its process just died; "
                   "or the gateway/registry cannot be reached. Calls fail at once instead of hanging.",
    "DEADLINE_EXCEEDED": "The call did not finish within the client's deadline.",
    "SERVICE_FAILED": "The tenant's code raised: the message is `Type: text (file.py, line N, in method)`, "
                      "the `solo-exception-type` trailer holds the type. Also used when the constructor, "
                      "`start()` or the import failed during a deploy.",
    "INTERNAL": "A bug in Solo (an unexpected error in the gateway); the message carries a request id to find it in "
                "the gateway log. No request a client can send should get it: tests/integration/test_fuzz_rpcs.py "
                "sends garbage to every RPC to keep it so.",
    "UNKNOWN": "An error Solo could not classify.",
}

# Short notes per RPC that the proto does not carry. Keys must be RPCs of the proto (tested).
RPC_NOTES = {
    "DeployService": "Validates the spec (name, version, source size and syntax, env, labels, config, resources), "
                     "starts a host (from the warm pool when the resources equal the default shape) and loads "
                     "the source. Replies once this gateway routes to the new version, so the service is "
                     "callable when the reply arrives. The same spec again is a no-op (`changed: false`); a "
                     "different spec under a running name is `ALREADY_EXISTS` unless `replace` is set. A "
                     "STOPPED or FAILED service can be deployed again without `replace`.",
    "GetService": "One service of the caller's tenant, with live stats from its host "
                  "(calls, errors, in-flight, RSS, CPU time).",
    "ListServices": "Every service of the caller's tenant, one message each, ordered by name. "
                    "`stats` is empty here; use GetService for live stats.",
    "StopService": "Routes away from the service first, drains in-flight calls (up to "
                   "`stop_grace_seconds`), runs its `stop()` hook, then ends the host. The service stays "
                   "listed as STOPPED unless `remove` is set.",
    "Invoke": "Calls one method and returns its result. The client's deadline is passed to the service "
              "call. Streaming (generator) methods must be called with InvokeStream.",
    "InvokeStream": "Calls a method and streams its results, one message per item; a non-streaming method "
                    "yields one message.",
    "GetMetrics": "Call counters of the caller's tenant as seen by this gateway process (reset when it restarts).",
    "Logs": "A service of the caller's tenant's output, oldest first: stdout and stderr as its host read them, "
            "and Solo's own lines (stream `solo`: started, crashed, restarted, swapped, stopped, output dropped), "
            "each with the time the host read it and the version that wrote it. Needs the `logs` right on the "
            "service. `tail` keeps the newest lines (at most 100,000), `since_seconds` an age (at most ten "
            "years); anything else is `INVALID_ARGUMENT`. A service that is not the caller's is `NOT_FOUND` "
            "like a missing one; a stopped service's logs are kept, a removed one's deleted. With `follow` "
            "new lines follow (within about a second) until the client cancels; `RESOURCE_EXHAUSTED` past "
            "`[logs] max_followers` or `followers_per_tenant` streams (followed or not), and for a reader "
            "that takes no line for "
            "`[logs] slow_consumer_seconds` while one waits. Kept per service up to `[logs] service_bytes` "
            "(see docs/OPERATIONS.md, Logs).",
    "MintToken": "Returns a new bearer token for `tenant` (same naming rules as services). Only the hash is "
                 "stored; the token is shown once.",
    "PutSecret": "Stores a new version of a secret of the caller's tenant (1 for a new key); needs `secrets.write` "
                 "on the key. The value (at most `[vault] max_secret_bytes`) is encrypted with its own data key "
                 "before it is written. `RESOURCE_EXHAUSTED` past `[vault] max_secrets_per_tenant` or "
                 "`max_tenant_bytes`; past `max_versions_per_key` the oldest version goes. Event `secret.put`.",
    "GetSecret": "The newest version of a secret, or `version`; needs `secrets.read` on the key. A key of another "
                 "tenant is `NOT_FOUND` like a missing one. Event `secret.read`, written before the answer: "
                 "`UNAVAILABLE` when it cannot be.",
    "ListSecrets": "Keys (never values) under `prefix`, with their newest version and versions kept; needs "
                   "`secrets.read` on the prefix, and lists only the keys the token may read.",
    "SwapService": "The new code gets the service's secrets: needs `secrets.read` on each; `FAILED_PRECONDITION` "
                   "(retry) when the service's secrets changed while the swap waited for it.",
    "RollbackService": "The version rolled back to gets its secrets' newest values: needs `secrets.read` on each "
                       "of its keys; `FAILED_PRECONDITION` (retry) when they changed while the rollback waited.",
    "DeleteSecret": "Removes every version of a secret; needs `secrets.write` on the key. Event `secret.deleted`. "
                    "A service deployed with it fails its next start until the key is put again.",
    "RotateMasterKey": "Operator only: a new master key, every data key re-wrapped under it, the old key deleted; a "
                       "crash at any step loses nothing (the next use of the vault finishes it). Event "
                       "`vault.key_rotated`.",
    "GetConfig": "Operator only (the `config` right and the operator token; a tenant's token is `PERMISSION_DENIED`): "
                 "the configuration in force as TOML, with the whole gateway's rates (not one process's share), "
                 "paths to secret files but never their content, the file it came from and when it was (re)loaded.",
    "ReloadConfig": "Operator only, like GetConfig: loads the configuration again the way `solo up` made it (defaults "
                    "< its file < its flags, which still win) and applies the keys that can change live (quotas, "
                    "rates, retention, egress rules; a removed destination is refused to running services' new "
                    "connections). Replies once every gateway process applies it: `changed` lists them, "
                    "`needs_restart` the keys that differ but stay as they were until the next `solo up`. A file "
                    "that does not load changes nothing: `INVALID_ARGUMENT` naming the key and the problem "
                    "(`FAILED_PRECONDITION` when the file is gone, or Solo was not started from one). Event "
                    "`config.reloaded` (keys only; a tenant sees only its own keys). SIGHUP to `solo up` does the same.",
    "WhoAmI": "The tenant the presented token acts for, and whether it is the operator token.",
}

HEADER = """\
# Solo gRPC API reference

<!-- Generated by scripts/gen_api_docs.py from proto/solo/v1/solo.proto. Do not edit by hand:
     change the proto (or the generator) and run `python scripts/gen_api_docs.py`. -->

The gateway speaks gRPC on `127.0.0.1:7070` by default, plaintext or TLS (`solo up --tls`, mutual TLS with `[tls] require_client_cert`; docs/SECURITY.md). The contract is
[`proto/solo/v1/solo.proto`](../proto/solo/v1/solo.proto), package `solo.v1`, service
`solo.v1.Gateway`. The gateway also serves the standard `grpc.health.v1.Health` and
`grpc.reflection.v1alpha.ServerReflection` services (both without authentication; health's `""` and
`solo.v1.Gateway` entries are SERVING only while the gateway is ready, see docs/OPERATIONS.md, "Health and
alerts"), so tools such as `grpcurl` work without the proto file:

```sh
grpcurl -plaintext 127.0.0.1:7070 list
grpcurl -plaintext -H "authorization: Bearer $(cat ~/.solo/operator.token)" \\
  -d '{"service":"echo","method":"echo","json":"\\"hi\\""}' 127.0.0.1:7070 solo.v1.Gateway/Invoke
# {
#   "json": "\\"hi\\""
# }
```

The Python clients (`solo.SoloClient`, `solo.AsyncSoloClient`) wrap these RPCs; see the README.

The same RPCs are also served as REST/JSON routes on `127.0.0.1:7080`, with the same tokens, codes and
messages (the routes call these handlers): docs/REST.md and docs/openapi.json.

## Authentication

Every `solo.v1.Gateway` RPC needs the metadata `authorization: Bearer <token>`. The token alone
decides the tenant the call acts for; no request field names a tenant. `solo up` writes the
operator token to `<data-dir>/operator.token` (tenant `default`, may mint tokens); tenant tokens
come from `MintToken` / `solo tokens mint TENANT`. A tenant sees only its own services: another
tenant's service answers `NOT_FOUND` exactly like a missing one.

Optional metadata `x-request-id` (up to 128 characters) is recorded as the `correlation_id` of the
events the call causes; without it the gateway makes one up.

## Arguments and results

`InvokeRequest.input` is one of:

| Input | The method receives |
|---|---|
| `json` holding an object, e.g. `{"by": 2}` | keyword arguments: `incr(by=2)` |
| `json` holding an array, e.g. `[1, 2]` | positional arguments: `add(1, 2)` |
| `json` holding any other value, e.g. `"hi"` or `3` | that value as the single argument |
| `raw` bytes | the bytes as the single argument |
| nothing (or an empty `json`) | no arguments |

`json` is JSON *text*: over grpcurl's JSON mapping a string argument is written `"json":"\\"hi\\""`.
A result that is `bytes` comes back in `raw`; any other result as JSON text in `json` (`null` for
`None`). Results must be JSON-serializable or bytes.

## Errors

A failed RPC ends with a gRPC status and a message that says what was wrong and what to do. The
trailing metadata `solo-error` carries Solo's own code (the gRPC code alone cannot tell
`SERVICE_FAILED` from `UNKNOWN`), and `solo-exception-type` the exception class name when tenant
code raised. The Python clients raise the matching `solo.SoloError` subclass; the `solo` command
exits with the code shown. A message quotes what was wrong and is cut to at most 4 KiB on the wire, so
a client's metadata limit never turns an error into a different one. The `solo` command checks its own
options first: a bad one (JSON that does not parse, a number out of range, `KEY=VALUE` without `=`)
is one line on stderr and exit code 2, before anything is sent.

"""


@dataclass
class Field:
    name: str
    type: str
    number: str
    label: str = ""       # "", "repeated", "optional"
    oneof: str = ""
    comment: str = ""


@dataclass
class Message:
    name: str
    comment: str = ""
    fields: list[Field] = field(default_factory=list)
    kind: str = "message"  # or "enum"


@dataclass
class Rpc:
    name: str
    request: str
    response: str
    client_stream: bool = False
    server_stream: bool = False
    comment: str = ""


@dataclass
class Service:
    name: str
    comment: str = ""
    rpcs: list[Rpc] = field(default_factory=list)


@dataclass
class ProtoFile:
    package: str = ""
    comment: str = ""
    services: list[Service] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


# -- parsing -----------------------------------------------------------------------------------
TOKEN_RE = re.compile(r"""
    (?P<comment>//[^\n]*)
  | (?P<block>/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*|-?[0-9][0-9A-Za-z_.+-]*)
  | (?P<symbol>[{}()\[\];=<>,])
  | (?P<space>\s+)
""", re.S | re.X)


@dataclass
class Token:
    kind: str
    text: str
    line: int


def tokenize(text: str) -> list[Token]:
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        match = TOKEN_RE.match(text, pos)
        if not match:
            raise SystemExit(f"{PROTO}: cannot parse near line {line}: {text[pos:pos + 30]!r}")
        kind, value = match.lastgroup, match.group()
        if kind == "comment":
            tokens.append(Token("comment", value[2:].strip(), line))
        elif kind not in ("space", "block"):
            tokens.append(Token(kind, value, line))
        line += value.count("\n")
        pos = match.end()
    return tokens


class Parser:
    """A small recursive-descent parser for the proto3 subset Solo's contract uses.

    Leading comments: the `//` lines directly above an element. Trailing comment: a `//` on the
    same line as the element's end (its `;`, or the `}` of a one-line message).
    """

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0
        self.pending: list[Token] = []  # comments seen since the last element

    # token helpers
    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.next()
        if token.text != text:
            raise SystemExit(f"{PROTO}:{token.line}: expected {text!r}, got {token.text!r}")
        return token

    def skip_comments(self) -> None:
        while (token := self.peek()) is not None and token.kind == "comment":
            self.pending.append(self.next())

    def leading(self, start_line: int) -> str:
        """The comment block ending on the line just above `start_line`."""
        block, expected = [], start_line - 1
        for token in reversed(self.pending):
            if token.line != expected:
                break
            block.insert(0, token.text)
            expected -= 1
        self.pending = []
        return " ".join(block)

    def trailing(self, end_line: int) -> str:
        token = self.peek()
        if token is not None and token.kind == "comment" and token.line == end_line:
            self.next()
            return token.text
        return ""

    def skip_statement(self) -> int:
        depth = 0
        while True:
            token = self.next()
            if token.text == "{":
                depth += 1
            elif token.text == "}":
                depth -= 1
                if depth == 0:
                    return token.line
            elif token.text == ";" and depth == 0:
                return token.line

    # grammar
    def parse(self) -> ProtoFile:
        proto = ProtoFile()
        self.skip_comments()
        first = self.peek()
        if self.pending and first is not None:
            # the file's header comment: everything above the first statement
            proto.comment = " ".join(t.text for t in self.pending)
            self.pending = []
        while True:
            self.skip_comments()
            token = self.peek()
            if token is None:
                return proto
            if token.text == "package":
                self.next()
                proto.package = self.next().text
                self.expect(";")
                self.pending = []
            elif token.text == "service":
                proto.services.append(self.service())
            elif token.text in ("message", "enum"):
                proto.messages.extend(self.message())
            else:  # syntax, import, option
                self.skip_statement()
                self.pending = []

    def service(self) -> Service:
        start = self.next()
        svc = Service(self.next().text, comment=self.leading(start.line))
        self.expect("{")
        while True:
            self.skip_comments()
            token = self.peek()
            if token.text == "}":
                self.next()
                self.pending = []
                return svc
            if token.text != "rpc":
                self.skip_statement()
                self.pending = []
                continue
            self.next()
            rpc = Rpc(self.next().text, "", "", comment=self.leading(token.line))
            rpc.client_stream, rpc.request = self.rpc_type()
            self.expect("returns")
            rpc.server_stream, rpc.response = self.rpc_type()
            end = self.next()
            if end.text == "{":  # options block
                self.pos -= 1
                end_line = self.skip_statement()
            else:
                end_line = end.line
            trailing = self.trailing(end_line)
            rpc.comment = " ".join(c for c in (rpc.comment, trailing) if c)
            svc.rpcs.append(rpc)

    def rpc_type(self) -> tuple[bool, str]:
        self.expect("(")
        token = self.next()
        stream = token.text == "stream"
        name = self.next().text if stream else token.text
        self.expect(")")
        return stream, name

    def message(self, prefix: str = "") -> list[Message]:
        start = self.next()
        msg = Message(prefix + self.next().text, comment=self.leading(start.line), kind=start.text)
        found = [msg]
        self.expect("{")
        oneof = ""
        while True:
            self.skip_comments()
            token = self.peek()
            if token.text == "}":
                self.next()
                if oneof:
                    oneof = ""
                    self.pending = []
                    continue
                if msg.fields:
                    last = msg.fields[-1]
                    trailing = self.trailing(token.line)
                    if trailing and not last.comment:
                        last.comment = trailing
                self.pending = []
                return found
            if token.text in ("message", "enum"):
                found.extend(self.message(prefix=msg.name + "."))
            elif token.text == "oneof":
                self.next()
                oneof = self.next().text
                self.expect("{")
                self.pending = []
            elif token.text in ("option", "reserved", "extensions"):
                self.skip_statement()
                self.pending = []
            elif msg.kind == "enum":
                name = self.next().text
                self.expect("=")
                number = self.next().text
                while self.peek().text != ";":
                    self.next()
                end = self.next()
                comment = " ".join(c for c in (self.leading(token.line), self.trailing(end.line)) if c)
                msg.fields.append(Field(name, "", number, comment=comment))
            else:
                msg.fields.append(self.field(token, oneof))

    def field(self, first: Token, oneof: str) -> Field:
        label = ""
        if first.text in ("repeated", "optional"):
            label = self.next().text
        type_ = self.next().text
        if type_ == "map":
            self.expect("<")
            key = self.next().text
            self.expect(",")
            value = self.next().text
            self.expect(">")
            type_ = f"map<{key}, {value}>"
        name = self.next().text
        self.expect("=")
        number = self.next().text
        if self.peek().text == "[":  # field options
            while self.next().text != "]":
                pass
        end = self.expect(";")
        comment = " ".join(c for c in (self.leading(first.line), self.trailing(end.line)) if c)
        return Field(name, type_, number, label=label, oneof=oneof, comment=comment)


def parse_proto(text: str) -> ProtoFile:
    return Parser(tokenize(text)).parse()


# -- rendering ---------------------------------------------------------------------------------
def anchor(kind: str, name: str) -> str:
    return f"{kind}-{name.lower().replace('.', '')}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def type_link(type_: str, known: dict[str, str], scope: str = "") -> str:
    """`type_` as Markdown, linked when it is a message or enum of this file (nested names too)."""
    def one(name: str) -> str:
        for candidate in (f"{scope}.{name}" if scope else "", name):
            if candidate in known:
                return f"[`{name}`](#{anchor(known[candidate], candidate)})"
        return f"`{name}`"

    match = re.fullmatch(r"map<(\w+), ([\w.]+)>", type_)
    if match:
        return f"map<{one(match.group(1))}, {one(match.group(2))}>"
    return one(type_)


def status_rows() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from solo.cli import EXIT_CODES
    from solo.errors import ERRORS_BY_CODE
    from solo.gateway.status import STATUS_BY_CODE

    rows = ["| Solo code (`solo-error`) | gRPC status | Python exception | `solo` exit code | Meaning |",
            "|---|---|---|---|---|"]
    for code, status in STATUS_BY_CODE.items():
        exc = ERRORS_BY_CODE.get(code)
        exc_name = f"`solo.{exc.__name__}`" if exc is not None else "`solo.SoloError`"
        if exc is not None and exc.__name__ == "Internal":
            exc_name = "`solo.errors.Internal`"
        meaning = CODE_MEANINGS.get(code, "")
        rows.append(f"| `{code}` | `{status.name}` | {exc_name} | {EXIT_CODES.get(code, 1)} | {cell(meaning)} |")
    return rows


def render(proto_text: str | None = None) -> str:
    proto = parse_proto(proto_text if proto_text is not None else PROTO.read_text())
    known = {m.name: m.kind for m in proto.messages}
    out = [HEADER.rstrip("\n"), ""]
    out += status_rows()
    out.append("")

    for svc in proto.services:
        full = f"{proto.package}.{svc.name}" if proto.package else svc.name
        out += [f"## Service `{full}`", ""]
        if svc.comment:
            out += [svc.comment, ""]
        out += ["| RPC | Request | Response |", "|---|---|---|"]
        for rpc in svc.rpcs:
            req = ("stream " if rpc.client_stream else "") + type_link(rpc.request, known)
            res = ("stream " if rpc.server_stream else "") + type_link(rpc.response, known)
            out.append(f"| [`{rpc.name}`](#{anchor('rpc', rpc.name)}) | {req} | {res} |")
        out.append("")
        for rpc in svc.rpcs:
            out += [f"### rpc {rpc.name}", ""]
            kind = {(False, False): "Unary", (False, True): "Server streaming",
                    (True, False): "Client streaming", (True, True): "Bidirectional streaming"}
            req = ("stream " if rpc.client_stream else "") + type_link(rpc.request, known)
            res = ("stream " if rpc.server_stream else "") + type_link(rpc.response, known)
            out += [f"`/{full}/{rpc.name}` · {kind[(rpc.client_stream, rpc.server_stream)]} · "
                    f"request {req} → response {res}", ""]
            for text in (rpc.comment, RPC_NOTES.get(rpc.name, "")):
                if text:
                    out += [text, ""]

    out += ["## Messages", ""]
    for msg in proto.messages:
        out += [f"### {msg.kind} {msg.name}", ""]
        if msg.comment:
            out += [msg.comment, ""]
        if not msg.fields:
            out += ["No fields.", ""]
            continue
        if msg.kind == "enum":
            out += ["| Value | Number | Description |", "|---|---|---|"]
            out += [f"| `{f.name}` | {f.number} | {cell(f.comment)} |" for f in msg.fields]
            out.append("")
            continue
        out += ["| Field | Type | Number | Description |", "|---|---|---|---|"]
        for f in msg.fields:
            type_ = (f"{f.label} " if f.label else "") + type_link(f.type, known, msg.name)
            notes = [f"One of `{f.oneof}`." if f.oneof else "", f.comment]
            out.append(f"| `{f.name}` | {type_} | {f.number} | {cell(' '.join(n for n in notes if n))} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/API.md is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} is up to date", file=sys.stderr)
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
