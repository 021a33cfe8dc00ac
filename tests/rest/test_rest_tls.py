"""REST over TLS and mutual TLS: the gateway's certificate, and a client certificate bound to a tenant binds
REST calls as it binds gRPC calls (a second gateway on the suite's Solo, as in tests/integration/test_tls.py)."""
from __future__ import annotations

import ssl

import httpx
import pytest

from solo.security.certs import init_ca, issue_client, issue_server
from solo.security.keys import KeyRing


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rest-tls")
    init_ca(directory)
    issue_server(directory)
    return {"dir": directory, "ca": directory / "ca.crt", "alice": issue_client(directory, "alice-rest", "alice"),
            "plain": issue_client(directory, "rest-ci")}


def _gateway(solo, pki, mutual: bool):
    from solo.gateway.server import start_gateway
    from solo.security.tokens import authenticator

    base = solo.supervisor.config
    config = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0}),
        "rest": base.rest.model_copy(update={"port": 0}),
        "tls": base.tls.model_copy(update={"enabled": True, "dir": pki["dir"], "require_client_cert": mutual})})
    return solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                  authenticator(config, KeyRing(base.data_dir / "keys")),
                                  solo.supervisor.event_log_handle()))


@pytest.fixture(scope="module")
def tls_gateway(solo, pki):
    started = _gateway(solo, pki, mutual=False)
    yield started
    solo.run(started.stop(0.5))


@pytest.fixture(scope="module")
def mutual_gateway(solo, pki):
    started = _gateway(solo, pki, mutual=True)
    yield started
    solo.run(started.stop(0.5))


def _tls(pki, certificate=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if certificate is not None:
        context.load_cert_chain(str(certificate.cert), str(certificate.key))
    return context


def test_rest_is_https_with_the_gateways_certificate(tls_gateway, pki, alice):
    url = tls_gateway.rest.url
    assert url.startswith("https://")
    headers = {"Authorization": f"Bearer {alice.token}"}
    answer = httpx.get(f"{url}/v1/whoami", headers=headers, verify=_tls(pki), timeout=30)
    assert answer.json()["tenant"] == "alice"
    with pytest.raises(httpx.HTTPError):  # plaintext to a TLS port
        httpx.get(url.replace("https://", "http://") + "/v1/whoami", headers=headers, timeout=10)


def test_a_client_certificate_bound_to_a_tenant_binds_rest_calls(mutual_gateway, pki, alice, bob):
    url = mutual_gateway.rest.url
    with httpx.Client(base_url=url, verify=_tls(pki, pki["alice"]), timeout=30) as laptop:
        assert laptop.get("/v1/whoami", headers={"Authorization": f"Bearer {alice.token}"}).json()["tenant"] == "alice"
        refused = laptop.get("/v1/whoami", headers={"Authorization": f"Bearer {bob.token}"})
        assert refused.status_code == 403 and "bound to tenant 'alice'" in refused.json()["message"]
    with httpx.Client(base_url=url, verify=_tls(pki, pki["plain"]), timeout=30) as unbound:
        assert unbound.get("/v1/whoami", headers={"Authorization": f"Bearer {bob.token}"}).json()["tenant"] == "bob"
    with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake fails
        httpx.get(f"{url}/v1/whoami", headers={"Authorization": f"Bearer {alice.token}"}, verify=_tls(pki),
                  timeout=10)
