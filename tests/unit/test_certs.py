"""The private CA: files and modes, SANs, validity, tenant binding, refusal to overwrite."""
from __future__ import annotations

import ipaddress
import os
import stat

import pytest
from cryptography import x509

from solo.errors import FailedPrecondition, InvalidRequest
from solo.security.certs import TENANT_URI, bound_tenant, init_ca, issue_client, issue_server


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_server_and_client_certificates(tmp_path):
    ca = init_ca(tmp_path)
    server = issue_server(tmp_path, ["solo.example.com", "10.1.2.3"])
    client = issue_client(tmp_path, "ci-runner", tenant="acme")
    for key in (ca.key, server.key, client.key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o700
    ca_cert, server_cert, client_cert = load(ca.cert), load(server.cert), load(client.cert)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "solo.example.com"} <= set(sans.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")} <= \
        set(sans.get_values_for_type(x509.IPAddress))
    for cert in (server_cert, client_cert):
        cert.verify_directly_issued_by(ca_cert)
    days = (server_cert.not_valid_after_utc - server_cert.not_valid_before_utc).days
    assert 360 <= days <= 366 and (client_cert.not_valid_after_utc - client_cert.not_valid_before_utc).days <= 91
    uris = client_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [TENANT_URI + "acme"]
    assert bound_tenant({"x509_subject_alternative_name": [b"ci-runner", b"solo://tenant/acme"]}) == "acme"
    assert bound_tenant({"x509_subject_alternative_name": [b"ci-runner"]}) is None and bound_tenant({}) is None


def test_the_ca_is_not_replaced_by_accident_and_names_are_checked(tmp_path):
    init_ca(tmp_path)
    with pytest.raises(FailedPrecondition, match="--force"):
        init_ca(tmp_path)
    with pytest.raises(InvalidRequest):
        issue_client(tmp_path, "../escape")
    with pytest.raises(InvalidRequest):
        issue_client(tmp_path, "ok", tenant="Bad Tenant")
    with pytest.raises(FailedPrecondition, match="solo certs init"):
        issue_server(tmp_path / "nothing-here")
