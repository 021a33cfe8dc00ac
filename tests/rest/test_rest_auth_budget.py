"""The refused-authentication budget counts per real HTTP client, as gRPC's per peer: past it a source's calls
with tokens not known good are 429 before any signature is checked (a gateway of its own on the suite's Solo,
so its budget is not the session's)."""
from __future__ import annotations

import httpx
import pytest

from solo.security.keys import KeyRing


@pytest.fixture(scope="module")
def own_gateway(solo):
    from solo.gateway.server import start_gateway
    from solo.security.tokens import authenticator

    base = solo.supervisor.config
    config = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0}),
        "rest": base.rest.model_copy(update={"port": 0}),
        "limits": base.limits.model_copy(update={"auth_failures_per_second": 1, "auth_failures_burst": 5})})
    started = solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                     authenticator(config, KeyRing(base.data_dir / "keys")),
                                     solo.supervisor.event_log_handle()))
    yield started
    solo.run(started.stop(0.5))


def test_refused_authentications_are_budgeted_per_client(own_gateway, alice):
    url = own_gateway.rest.url
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/v1/whoami", headers={"Authorization": f"Bearer {alice.token}"}).status_code == 200
        answers = [c.get("/v1/whoami", headers={"Authorization": "Bearer forged"}) for _ in range(12)]
        codes = [a.status_code for a in answers]
        assert codes[0] == 401 and 429 in codes, codes
        limited = next(a for a in answers if a.status_code == 429)
        assert "too many refused authentications from 127.0.0.1" in limited.json()["message"]
        assert int(limited.headers["Retry-After"]) >= 1
        # a token already known good still works from that source
        assert c.get("/v1/whoami", headers={"Authorization": f"Bearer {alice.token}"}).status_code == 200
