"""The REST gateway's OpenAPI document: in sync with the proto and the checked-in docs/openapi.json, and true
for any request generated from it (schemathesis: no 5xx, answers that fit the document)."""
from __future__ import annotations

import importlib.util
import json

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from solo.rest.errors import HTTP_STATUS_BY_CODE
from solo.rest.openapi import document
from solo.rest.table import GATEWAY, ROUTES
from tests.conftest import ROOT

CHECKED_IN = ROOT / "docs" / "openapi.json"
# streams that need not end (Watch, Logs with follow=true) and streaming calls: tested in test_rest_flow.py
NOT_GENERATED = {"Watch", "Logs", "InvokeStream"}


def test_every_rpc_has_a_route_and_every_route_an_rpc():
    assert {m.name for m in GATEWAY.methods} == {r.rpc for r in ROUTES}
    operations = [r.operation for r in ROUTES]
    assert len(operations) == len(set(operations))
    assert len({(r.verb, r.path) for r in ROUTES}) == len(ROUTES)


def test_the_checked_in_document_is_current():
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert CHECKED_IN.read_text() == module.render(), "docs/openapi.json is stale: run python scripts/gen_openapi.py"


def test_every_field_of_every_message_is_in_the_document():
    schemas = document()["components"]["schemas"]
    for route in ROUTES:
        if route.rpc in ("Invoke", "InvokeStream"):  # the answer is the method's result itself
            continue
        output = route.method.output_type
        assert set(schemas[output.name]["properties"]) == {f.name for f in output.fields}
    assert set(schemas["Error"]["properties"]["code"]["enum"]) == set(HTTP_STATUS_BY_CODE)


def test_the_served_document_is_the_checked_in_one(rest_url):
    served = httpx.get(f"{rest_url}/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(CHECKED_IN.read_text())
    # no Swagger UI page: it would load its script from a CDN into a page where a token is pasted
    assert httpx.get(f"{rest_url}/docs").status_code == 404


def test_generated_requests_get_no_5xx_and_answers_that_fit_the_document(solo, operator, rest_url):
    headers = {"Authorization": f"Bearer {operator.mint_token('fuzzco')}"}
    schema = schemathesis.openapi.from_url(f"{rest_url}/openapi.json")
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw["operationId"] in NOT_GENERATED:
            continue

        @settings(max_examples=int(__import__("os").environ.get("REST_FUZZ", 6)), deadline=None, database=None, derandomize=True, phases=[Phase.explicit,
                  Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(base_url=rest_url, headers=headers, timeout=30)
            case.validate_response(response, checks=checks)
        run()
        tried += 1
    assert tried == len(ROUTES) - len(NOT_GENERATED)
