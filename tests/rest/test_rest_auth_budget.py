"""The refused-authentication budget counts per real HTTP client, as gRPC's per peer: past it a source's calls
with tokens not known good are 429 before any signature is checked (a gateway of its own on the suite's Solo,
so its budget is not the session's)."""
from __future__ import annotations

import httpx
import pytest

from tests.rest.conftest import own_gateway


@pytest.fixture(scope="module")
def budgeted(solo):
    with own_gateway(solo, limits={"auth_failures_per_second": 1, "auth_failures_burst": 5}) as gateway:
        yield gateway


def test_refused_authentications_are_budgeted_per_client(budgeted, alice):
    url = budgeted.rest.url
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/v1/whoami", headers={"Authorization": f"Bearer {alice.token}"}).status_code == 200
        answers = [c.get("/v1/whoami", headers={"Authorization": "Bearer forged"}) for _ in range(12)]
        codes = [a.status_code for a in answers]
        assert codes[0] == 401 and 429 in codes, codes
        limited = next(a for a in answers if a.status_code == 429)
        assert "too many refused authentications from 127.0.0.1" in limited.json()["message"]
        assert int(limited.headers["Retry-After"]) >= 1
        # a route that takes a body checks the token before reading it, within the same budget
        posted = c.post("/v1/services", json={"name": "x", "source": "x"}, headers={"Authorization": "Bearer forged"})
        assert posted.status_code == 429 and "refused authentications" in posted.json()["message"]
        # a token already known good still works from that source
        assert c.get("/v1/whoami", headers={"Authorization": f"Bearer {alice.token}"}).status_code == 200
