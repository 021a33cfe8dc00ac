"""Bytes, not schemas: random bodies (bytes, huge numbers, deep nesting, JSON of the wrong shape), path and query
text and header values (Authorization, Last-Event-ID, Solo-Timeout, X-Request-Id, Content-Type; non-ASCII
included) sent to every route of a gateway of its own on the suite's Solo (its own budget of refused
authentications: forged tokens here do not slow the session's clients). No answer is a 5xx the route cannot
legitimately give (ALLOWED_5XX), and every error is a JSON {code, message}. test_openapi.py fuzzes what the
schema allows; this fuzzes what it does not."""
from __future__ import annotations

import collections
import json
import math
import os
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solo.rest.table import INVOKE, INVOKE_SSE, ROUTES
from tests.rest.conftest import own_gateway

EXAMPLES = int(os.environ.get("REST_BYTE_FUZZ", 150))

# The 5xx a route may give for a request, and when (anything else, 500 and 501 above all, is a finding):
# - 502 SERVICE_FAILED: a call's service raised (Invoke, InvokeStream: the gateway worked, the service did not);
# - 503 UNAVAILABLE: Solo's registry or event log did not answer (every route but WhoAmI, which the token
#   alone answers); never uvicorn's own plain-text 503: it is a JSON error like every other;
# - 504 DEADLINE_EXCEEDED: only when the request gave a Solo-Timeout (a deadline that can pass).


def allowed_5xx(route, status: int, code: str, deadline_given: bool) -> bool:
    if status == 502:
        return code == "SERVICE_FAILED" and route.shape in (INVOKE, INVOKE_SSE)
    if status == 503:
        return code == "UNAVAILABLE" and route.rpc != "WhoAmI"
    if status == 504:
        return code == "DEADLINE_EXCEEDED" and deadline_given
    return False


def _header_text(raw: bytes) -> bytes:
    """Random bytes as an HTTP header value (what HTTP/1.1 can carry: no control characters, no CR/LF)."""
    return bytes(b for b in raw if b == 9 or 0x20 <= b <= 0x7E or b >= 0x80).strip(b" \t")


WEIRD = ["", "0", "-1", "1e999", "NaN", "Infinity", "true", "null", "9" * 20, "9" * 4301, "\u00b2", "\u0661\u0662",
         "%00", "../../etc", "a" * 300, "é", "\U0001f600", "x=y", "1_000", " 7 "]
text = st.one_of(st.text(max_size=40), st.sampled_from(WEIRD))
header_value = st.one_of(st.binary(max_size=64).map(_header_text), st.sampled_from([w.encode("utf-8") for w in WEIRD]),
                         st.just("\u00b2".encode("latin-1")))
numbers = st.sampled_from(["9" * 19, "9" * 20, "-" + "9" * 40, "9" * 309, "1e400", "-1e400", "9" * 4300, "9" * 4301,
                           "9" * 20000, "0.1e-9999", "1" + "0" * 5000 + ".5"])


@st.composite
def json_values(draw, depth: int = 2):
    if depth == 0:
        return draw(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text))
    return draw(st.one_of(json_values(0), st.lists(json_values(depth - 1), max_size=3),
                          st.dictionaries(text, json_values(depth - 1), max_size=3)))


@st.composite
def bodies(draw, route) -> bytes | None:
    fields = [f.name for f in route.method.input_type.fields] + ["spec", "nosuch"]
    kind = draw(st.sampled_from(["none", "bytes", "number", "number_in_field", "nested", "json", "fields"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "number":
        return draw(numbers).encode()
    if kind == "number_in_field":
        return f'{{"{draw(st.sampled_from(fields))}": {draw(numbers)}}}'.encode()
    if kind == "nested":
        depth = draw(st.sampled_from([10, 100, 1000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + ("1" if opener != "[" else "") + closer * depth).encode()
    if kind == "json":
        return json.dumps(draw(json_values())).encode()
    return json.dumps({draw(st.sampled_from(fields)): draw(json_values(1)) for _ in range(draw(st.integers(1, 3)))}
                      ).encode()


@st.composite
def requests(draw, token: str):
    route = draw(st.sampled_from(ROUTES))
    path = route.path
    for name in route.path_params:
        value = draw(text)
        safe = "/" if ":path}" in path else ""
        path = path.replace(f"{{{name}:path}}", quote(value, safe=safe) or "x").replace(
            f"{{{name}}}", quote(value, safe=safe) or "x")
    names = [p.rsplit(".", 1)[-1] for p in route.query] + ["owner", "access_token"]
    # each oddity half the time or less, so that requests also get past the first check to the later ones
    query = draw(st.lists(st.tuples(st.one_of(st.sampled_from(names), text), text), max_size=2)) \
        if draw(st.booleans()) else []
    authorization = draw(st.sampled_from([None, "good", "good+junk", "garbage", "bearer-garbage", "raw"]))
    headers: list[tuple[bytes, bytes]] = []
    if authorization is not None:
        headers.append((b"authorization", {
            "good": f"Bearer {token}".encode(), "good+junk": f"Bearer {token}".encode() + draw(header_value),
            "garbage": draw(header_value), "bearer-garbage": b"Bearer " + draw(header_value),
            "raw": draw(header_value)}[authorization]))
    timeout = draw(st.sampled_from([b"30", b"0.001", b"-1", b"nan", b"inf", b"9" * 5000]) | header_value) \
        if draw(st.booleans()) else None
    if timeout is not None:
        headers.append((b"solo-timeout", timeout))
    for name in (b"last-event-id", b"x-request-id", b"content-type"):
        if draw(st.integers(0, 2)) == 0:
            headers.append((name, draw(st.one_of(header_value, st.sampled_from(
                [b"application/json", b"application/octet-stream", b"text/plain; charset=latin-1"])))))
    return route, path, query, [(k, _header_text(v)) for k, v in headers], draw(bodies(route))


def _deadline(headers) -> bool:
    given = dict(headers).get(b"solo-timeout")
    if given is None:
        return False
    try:
        seconds = float(given.decode("latin-1"))
    except ValueError:
        return False
    return math.isfinite(seconds) and seconds > 0


@pytest.fixture(scope="module")
def fuzz_gateway(solo):
    with own_gateway(solo) as gateway:
        yield gateway


def test_random_bytes_to_every_route_get_no_unexpected_5xx_and_json_errors(fuzz_gateway, operator):
    token = operator.mint_token("fuzzrest")
    findings: list[str] = []
    statuses: collections.Counter = collections.Counter()
    with httpx.Client(base_url=fuzz_gateway.rest.url, timeout=60) as http:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=requests(token))
        def run(case):
            route, path, query, headers, body = case
            request = http.build_request(route.verb, path, params=query, headers=headers, content=body)
            response = http.send(request, stream=True)
            try:
                streamed = response.headers.get("content-type", "").startswith("text/event-stream")
                if not streamed:  # a stream's head is enough: it is a 200 that goes on
                    response.read()
            finally:
                response.close()
            seen = f"{route.verb} {path[:80]} {response.status_code}"
            statuses[response.status_code] += 1
            if response.status_code < 400:
                return
            try:
                error = json.loads(response.content)
                code, message = error["code"], error["message"]
                assert isinstance(code, str) and isinstance(message, str) and message
            except (ValueError, KeyError, TypeError, AssertionError):
                findings.append(f"{seen}: not a JSON {{code, message}}: {response.content[:200]!r}")
                return
            if response.status_code >= 500 and not allowed_5xx(route, response.status_code, code,
                                                                 _deadline(headers)):
                findings.append(f"{seen} {code}: {message[:200]}")
        run()
    print("answers by status:", dict(sorted(statuses.items())))
    assert not findings, "\n".join(findings[:20])
