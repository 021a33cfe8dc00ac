"""TLS and mutual TLS at the gateway, over real gRPC with real certificates (a second gateway on
the suite's Solo, so the registry and services are the same)."""
from __future__ import annotations

import pytest

from solo import PermissionDenied, SoloClient, Unavailable
from solo.security.certs import init_ca, issue_client, issue_server
from solo.security.keys import KeyRing


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    init_ca(directory)
    issue_server(directory)
    other = tmp_path_factory.mktemp("other-ca")
    init_ca(other)
    return {"dir": directory, "ca": directory / "ca.crt", "alice": issue_client(directory, "alice-laptop", "alice"),
            "plain": issue_client(directory, "ci"), "foreign": issue_client(other, "mallory", "alice")}


def gateway(solo, pki, mutual: bool):
    from solo.gateway.server import start_gateway
    from solo.security.tokens import authenticator

    base = solo.supervisor.config
    config = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"port": 0, "metrics_port": 0}),
        "tls": base.tls.model_copy(update={"enabled": True, "dir": pki["dir"], "require_client_cert": mutual})})
    return solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                  authenticator(config, KeyRing(base.data_dir / "keys")),
                                  solo.supervisor.event_log_handle()))


@pytest.fixture(scope="module")
def tls_only(solo, pki):
    started = gateway(solo, pki, mutual=False)
    yield f"localhost:{started.port}"
    solo.run(started.stop(0.5))


@pytest.fixture(scope="module")
def mutual(solo, pki):
    started = gateway(solo, pki, mutual=True)
    yield f"127.0.0.1:{started.port}"
    solo.run(started.stop(0.5))


def test_tls_gateway_serves_tls_clients_and_refuses_plaintext(tls_only, pki, alice):
    with SoloClient(tls_only, alice.token, tls_ca=pki["ca"], timeout=10) as c:
        assert c.whoami()["tenant"] == "alice"
    with SoloClient(tls_only, alice.token, timeout=10) as plaintext, pytest.raises(Unavailable):
        plaintext.whoami()


def test_a_server_certificate_from_another_ca_is_not_trusted(tls_only, pki, alice, tmp_path):
    init_ca(tmp_path)
    with SoloClient(tls_only, alice.token, tls_ca=tmp_path / "ca.crt", timeout=10) as c, pytest.raises(Unavailable):
        c.whoami()


def test_mutual_tls_needs_a_client_certificate_of_this_ca(mutual, pki, alice):
    with SoloClient(mutual, alice.token, tls_ca=pki["ca"], timeout=10) as no_cert, pytest.raises(Unavailable):
        no_cert.whoami()
    foreign = pki["foreign"]
    with SoloClient(mutual, alice.token, tls_ca=pki["ca"], tls_cert=foreign.cert, tls_key=foreign.key,
                    timeout=10) as c, pytest.raises(Unavailable):
        c.whoami()
    plain = pki["plain"]
    with SoloClient(mutual, alice.token, tls_ca=pki["ca"], tls_cert=plain.cert, tls_key=plain.key, timeout=10) as c:
        assert c.whoami()["tenant"] == "alice"


def test_a_certificate_bound_to_a_tenant_accepts_only_that_tenants_tokens(mutual, pki, alice, bob):
    cert = pki["alice"]
    with SoloClient(mutual, alice.token, tls_ca=pki["ca"], tls_cert=cert.cert, tls_key=cert.key, timeout=10) as c:
        assert c.whoami()["tenant"] == "alice"
    with SoloClient(mutual, bob.token, tls_ca=pki["ca"], tls_cert=cert.cert, tls_key=cert.key, timeout=10) as c:
        with pytest.raises(PermissionDenied, match="bound to tenant 'alice'"):
            c.list()


def test_a_node_certificate_is_not_a_client_certificate_at_the_gateway(mutual, pki, alice):
    """Node certificates (solo certs node) sit on every machine of a cluster for the call channel; over mutual
    TLS at the gateway one must not pass as a client certificate that carries any tenant's token."""
    from solo.security.certs import issue_node

    node = issue_node(pki["dir"], "worker-7")
    with SoloClient(mutual, alice.token, tls_ca=pki["ca"], tls_cert=node.cert, tls_key=node.key, timeout=10) as c:
        with pytest.raises(PermissionDenied, match="node certificate"):
            c.whoami()


def test_tls_settings_come_from_the_environment(tls_only, pki, alice, monkeypatch):
    monkeypatch.setenv("SOLO_TLS_CA", str(pki["ca"]))
    with SoloClient(tls_only, alice.token, timeout=10) as c:
        assert c.whoami()["tenant"] == "alice"


def test_solo_up_with_mutual_tls_from_the_cli(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SOLO_DATA_DIR": str(tmp_path)}
    env.pop("SOLO_TOKEN", None)

    def solo(*args):
        return subprocess.run([sys.executable, "-m", "solo.cli", *args], env=env, capture_output=True, text=True,
                              timeout=240)

    up = solo("up", "--port", "0", "--num-cpus", "1", "--no-example", "--require-client-cert")
    assert up.returncode == 0, up.stderr
    try:
        assert "client certificates required" in up.stdout
        state = json.loads((tmp_path / "solo.json").read_text())
        assert json.loads(solo("whoami", "--json").stdout)["operator"] is True  # the local CLI just works
        token = json.loads(solo("tokens", "mint", "acme", "--json").stdout)["token"]
        issued = json.loads(solo("certs", "issue", "acme-ci", "--tenant", "acme", "--json").stdout)
        with SoloClient(state["address"], token, tls_ca=issued["ca"], tls_cert=issued["cert"],
                        tls_key=issued["key"], timeout=10) as acme:
            assert acme.whoami()["tenant"] == "acme"
        with SoloClient(state["address"], token, tls_ca=issued["ca"], timeout=10) as no_cert:
            with pytest.raises(Unavailable):
                no_cert.whoami()
    finally:
        assert solo("down").returncode == 0
