"""The REST gateway of the session's Solo (tests/conftest.py), reached with a real HTTP client over 127.0.0.1."""
from __future__ import annotations

import json

import httpx
import pytest


@pytest.fixture(scope="session")
def rest_url(solo) -> str:
    rest = solo.supervisor.gateway.rest
    assert rest is not None, "the session's Solo serves no REST"
    return f"http://127.0.0.1:{rest.port}"


def client(rest_url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=rest_url, headers=headers, timeout=60)


@pytest.fixture(scope="session")
def http_alice(rest_url, alice):
    with client(rest_url, alice.token) as c:
        yield c


@pytest.fixture(scope="session")
def http_bob(rest_url, bob):
    with client(rest_url, bob.token) as c:
        yield c


@pytest.fixture(scope="session")
def http_anonymous(rest_url):
    with client(rest_url, None) as c:
        yield c


def sse_events(response: httpx.Response, stop=lambda event: False, most: int = 1000) -> list[dict]:
    """The Server-Sent Events of a streamed response, as dicts (event, id, data parsed as JSON when it is),
    up to the first for which `stop` is true, an `end` or `error` event, or `most` of them."""
    events, event = [], {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if event:
                data = "\n".join(event.pop("data", []))
                try:
                    event["data"] = json.loads(data)
                except ValueError:
                    event["data"] = data
                event.setdefault("event", "message")
                events.append(event)
                if stop(event) or event["event"] in ("end", "error") or len(events) >= most:
                    return events
            event = {}
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            event.setdefault("data", []).append(value)
        else:
            event[field] = value
    return events
