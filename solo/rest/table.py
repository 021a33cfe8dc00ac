"""Which HTTP route calls which RPC: one table, read by the app (solo/rest/app.py) and the OpenAPI document.

A route's request message is built from its path parameters (named after the fields they fill), the
query parameters it lists (dotted field paths; the parameter is named after the last part), and its
body: none, the whole message ("*", less what the path fills), or one field of it ("spec").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from solo._proto import solo_pb2 as pb

GATEWAY = pb.DESCRIPTOR.services_by_name["Gateway"]

# how the answer is shaped
UNARY = "unary"        # the response message as JSON
LIST = "list"          # a server stream collected into {items: [...]}
SSE = "sse"            # a server stream as Server-Sent Events
LOGS = "logs"          # LIST, or SSE with ?follow=true
INVOKE = "invoke"      # the body is the method's arguments, the answer its result
INVOKE_SSE = "invoke_sse"

FILTER = ("filter.tenant", "filter.types", "filter.subject", "filter.since_us", "filter.until_us",
          "filter.after_id")


@dataclass(frozen=True)
class Route:
    rpc: str
    verb: str
    path: str
    summary: str
    body: str = ""                     # "", "*" or a field name
    query: tuple[str, ...] = ()
    fixed: tuple[tuple[str, object], ...] = ()  # fields the route sets itself
    shape: str = UNARY
    items: str = ""                    # LIST/LOGS: the key of the list
    operation_id: str = ""

    @property
    def operation(self) -> str:
        return self.operation_id or self.rpc

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)(?::path)?\}", self.path))

    @property
    def openapi_path(self) -> str:
        return self.path.replace(":path}", "}")

    @property
    def method(self):
        return GATEWAY.methods_by_name[self.rpc]


ROUTES: tuple[Route, ...] = (
    Route("DeployService", "POST", "/v1/services", "Deploy a service: the body is its ServiceSpec",
          body="spec", query=("replace",)),
    Route("ListServices", "GET", "/v1/services", "The caller's services", shape=LIST, items="services"),
    Route("GetService", "GET", "/v1/services/{name}", "One of the caller's services"),
    Route("StopService", "POST", "/v1/services/{name}:stop", "Stop a service (kept as STOPPED unless remove=true)",
          query=("remove",)),
    Route("StopService", "DELETE", "/v1/services/{name}", "Stop a service and forget it",
          fixed=(("remove", True),), operation_id="RemoveService"),
    Route("SwapService", "POST", "/v1/services/{name}:swap", "Hot swap: new code, state handed over",
          body="*"),
    Route("RollbackService", "POST", "/v1/services/{name}:rollback", "Back to the previous (or a kept) version",
          body="*"),
    Route("GrantService", "POST", "/v1/services/{name}:grant", "Export a service to another tenant (or revoke)",
          body="*"),
    Route("ListGrants", "GET", "/v1/grants", "Grants given and received"),
    # :stream before the unary route: "{method}" would match "m:stream" too
    Route("InvokeStream", "POST", "/v1/services/{name}/methods/{method}:stream",
          "Call a streaming method: the body is its arguments; the results come as Server-Sent Events",
          shape=INVOKE_SSE),
    Route("Invoke", "POST", "/v1/services/{name}/methods/{method}",
          "Call a method: the body is its arguments (JSON, or raw bytes as application/octet-stream)",
          shape=INVOKE),
    Route("Logs", "GET", "/v1/services/{name}/logs", "A service's output; follow=true streams it as Server-Sent "
          "Events", query=("follow", "since_seconds", "tail"), shape=LOGS, items="lines"),
    Route("RegisterService", "POST", "/v1/discovery/{name}:register", "Register (or renew) an endpoint Solo does "
          "not run", body="*"),
    Route("DeregisterService", "POST", "/v1/discovery/{name}:deregister", "Remove a registration", body="*"),
    Route("DiscoverService", "GET", "/v1/discovery", "Find endpoints (labels as key=value, repeated)",
          query=("name", "owner", "labels")),
    Route("GetMetrics", "GET", "/v1/metrics", "The caller's call counts and latency"),
    Route("MintToken", "POST", "/v1/tokens", "Mint a token", body="*"),
    Route("ListTokens", "GET", "/v1/tokens", "Tokens minted", query=("tenant",)),
    Route("RevokeToken", "POST", "/v1/tokens:revoke", "Revoke a token and everything derived from it", body="*"),
    Route("WhoAmI", "GET", "/v1/whoami", "The caller's tenant and token"),
    Route("QueryEvents", "GET", "/v1/events", "The event history, a page at a time (oldest first)",
          query=(*FILTER, "limit")),
    Route("Watch", "GET", "/v1/events:watch", "Catch up from after_id (or Last-Event-ID), then follow live, as "
          "Server-Sent Events", query=FILTER, shape=SSE),
    Route("PutSecret", "PUT", "/v1/secrets/{key:path}", "Store a new version of a secret (value: base64)",
          body="*"),
    Route("GetSecret", "GET", "/v1/secrets/{key:path}", "A secret's value (base64); version 0 = the newest",
          query=("version",)),
    Route("ListSecrets", "GET", "/v1/secrets", "The caller's secrets (never their values)", query=("prefix",)),
    Route("DeleteSecret", "DELETE", "/v1/secrets/{key:path}", "Delete a secret and all its versions"),
    Route("RotateMasterKey", "POST", "/v1/vault:rotate", "Operator: a new master key, every data key re-wrapped"),
    Route("GetConfig", "GET", "/v1/config", "Operator: the configuration in force"),
    Route("ReloadConfig", "POST", "/v1/config:reload", "Operator: reload the configuration file"),
)
