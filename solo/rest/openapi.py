"""The OpenAPI document of the REST gateway, made from the route table and the proto's descriptors.

docs/openapi.json is this document, checked in (scripts/gen_openapi.py writes it; tests/rest checks
the served one equals it), so a change of the proto or of a route shows in review.
"""
from __future__ import annotations

from solo.rest import messages
from solo.rest.errors import HTTP_STATUS_BY_CODE
from solo.rest.table import INVOKE, INVOKE_SSE, LIST, LOGS, ROUTES, SSE, Route

VERSION = "v1"
ERROR = {"$ref": "#/components/schemas/Error"}
SSE_CONTENT = {"text/event-stream": {"schema": {"type": "string", "description": (
    "Server-Sent Events: `data:` is one message as JSON (Watch: `id:` is the event id, so a reconnecting "
    "EventSource resumes with Last-Event-ID); `event: end` when the stream ends, `event: error` with an Error "
    "body when it fails, comment lines while idle")}}}


def _query_parameter(route: Route, path: str) -> dict:
    field = messages.field_at(route.method.input_type, path)
    schema = messages.field_schema(field)
    if schema.get("type") == "object":  # a map: key=value, repeated
        schema = {"type": "array", "items": {"type": "string", "pattern": "^[^=]*=.*$"}}
    parameter = {"name": path.rsplit(".", 1)[-1], "in": "query", "required": False, "schema": schema}
    if schema.get("type") == "array":
        parameter.update(style="form", explode=True)
    return parameter


def _parameters(route: Route) -> list[dict]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for name in route.path_params]
    if route.shape in (INVOKE, INVOKE_SSE):
        params.append({"name": "owner", "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "the tenant that granted you its service"})
    params += [_query_parameter(route, path) for path in route.query]
    params.append({"name": "Solo-Timeout", "in": "header", "required": False,
                   "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                   "description": "the call's deadline in seconds (gRPC's deadline)"})
    return params


def _body_schema_name(route: Route) -> str:
    return route.method.input_type.name + ("Body" if route.path_params else "")


def _request_body(route: Route, schemas: dict) -> dict | None:
    if route.shape in (INVOKE, INVOKE_SSE):
        return {"required": False, "content": {
            "application/json": {"schema": {}, "description": "the arguments: an object = keyword arguments, an "
                                 "array = positional ones, anything else = the single argument"},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    if not route.body:
        return None
    descriptor = route.method.input_type
    if route.body == "*":
        name = _body_schema_name(route)
        schemas.setdefault(name, messages.message_schema(descriptor, leave_out=route.path_params))
        ref = name
    else:
        ref = descriptor.fields_by_name[route.body].message_type.name
    return {"required": route.body != "*", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _responses(route: Route) -> dict:
    output = route.method.output_type.name
    ok: dict
    if route.shape == INVOKE:
        ok = {"description": "the method's result", "content": {
            "application/json": {"schema": {}}, "application/octet-stream": {"schema": {"type": "string",
                                                                                       "format": "binary"}}}}
    elif route.shape in (SSE, INVOKE_SSE):
        ok = {"description": f"{output} messages as Server-Sent Events", "content": SSE_CONTENT}
    elif route.shape in (LIST, LOGS):
        listed = {"type": "object", "required": [route.items], "properties": {
            route.items: {"type": "array", "items": {"$ref": f"#/components/schemas/{output}"}}}}
        ok = {"description": f"every {output}", "content": {"application/json": {"schema": listed}}}
        if route.shape == LOGS:
            ok["description"] += " (with follow=true: Server-Sent Events)"
            ok["content"].update(SSE_CONTENT)
    else:
        ok = {"description": output, "content": {"application/json": {"schema": {"$ref":
                                                                                  f"#/components/schemas/{output}"}}}}
    return {"200": ok, "default": {"description": "an error: the code and message a gRPC client would get",
                                   "content": {"application/json": {"schema": ERROR}}}}


def document() -> dict:
    schemas: dict = {"Error": {"type": "object", "required": ["code", "message", "request_id"], "properties": {
        "code": {"type": "string", "enum": sorted(HTTP_STATUS_BY_CODE)},
        "message": {"type": "string"}, "request_id": {"type": "string"}}}}
    paths: dict = {}
    inputs, outputs = set(), set()
    for route in ROUTES:
        operation = {"operationId": route.operation, "summary": route.summary, "tags": [route.rpc],
                     "parameters": _parameters(route), "responses": _responses(route)}
        body = _request_body(route, schemas)
        if body is not None:
            operation["requestBody"] = body
            if route.body and route.body != "*":
                inputs.add(route.method.input_type.fields_by_name[route.body].message_type)
            elif route.body == "*":
                inputs.update(d for d in messages.messages_below(route.method.input_type).values()
                              if d is not route.method.input_type)
        if route.shape not in (INVOKE, INVOKE_SSE):
            outputs.add(route.method.output_type)
        paths.setdefault(route.openapi_path, {})[route.verb.lower()] = operation
    for descriptor in inputs:
        for name, below in messages.messages_below(descriptor).items():
            schemas.setdefault(name, messages.message_schema(below))
    for descriptor in outputs:
        for name, below in messages.messages_below(descriptor).items():
            schemas.setdefault(name, messages.message_schema(below, output=True))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Solo REST API", "version": VERSION, "description": (
            "The REST/JSON face of Solo's gateway: the same RPCs, tokens and statuses as gRPC (proto/solo/v1/"
            "solo.proto; docs/API.md explains each). Send `Authorization: Bearer <token>`. Errors are "
            "{code, message, request_id} with the HTTP status of the code.")},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }


__all__ = ["document"]
