"""The REST gateway of the session's Solo (tests/conftest.py), reached with a real HTTP client over 127.0.0.1."""
from __future__ import annotations

import contextlib
import json

import httpx
import pytest


@pytest.fixture(scope="session")
def rest_url(solo) -> str:
    rest = solo.supervisor.gateway.rest
    assert rest is not None, "the session's Solo serves no REST"
    return f"http://127.0.0.1:{rest.port}"


@contextlib.contextmanager
def own_gateway(solo, rest: dict | None = None, limits: dict | None = None):
    """A gateway of its own on the suite's Solo (its own REST port, budgets and settings), stopped after."""
    from solo.gateway.server import start_gateway
    from solo.security.keys import KeyRing
    from solo.security.tokens import authenticator

    base = solo.supervisor.config
    config = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0}),
        "rest": base.rest.model_copy(update={"port": 0, **(rest or {})}),
        "limits": base.limits.model_copy(update=limits or {})})
    started = solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                     authenticator(config, KeyRing(base.data_dir / "keys")),
                                     solo.supervisor.event_log_handle()))
    try:
        yield started
    finally:
        solo.run(started.stop(0.5))


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
