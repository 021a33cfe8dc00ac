"""A small private CA for the gateway's TLS, with `cryptography`: `solo certs init|issue`.

    <tls-dir>/ca.crt, ca.key           the CA (key 0600); keep ca.key off shared machines
    <tls-dir>/server.crt, server.key   the gateway's certificate; SANs: localhost, 127.0.0.1,
                                       this host's name, and any --host given
    <tls-dir>/clients/<name>.crt/.key  client certificates; `--tenant` binds one to a tenant
    <tls-dir>/nodes/<name>/            a node's certificate for the call channel between gateways and
                                       hosts ([tls] hosts): ca.crt, node.crt, node.key; the URI SAN
                                       `solo://node/<name>` says it is a node (node_tls.py checks it)

A client certificate bound to a tenant carries the URI SAN `solo://tenant/<tenant>`: the
gateway then accepts only tokens of that tenant over it. Keys are EC P-256 (small, fast, what
gRPC's TLS stacks all support); validity: CA 5 years, server 1 year, clients 90 days by default.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from solo.core.spec import validate_name
from solo.errors import FailedPrecondition, InvalidRequest
from solo.files import write_atomic
from solo.security.node_tls import NODE_URI

TENANT_URI = "solo://tenant/"
CA_DAYS, SERVER_DAYS, CLIENT_DAYS, NODE_DAYS = 5 * 365, 365, 90, 365


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    not_after: dt.datetime


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, 0o600 if private else 0o644)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _builder(subject: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Solo")]))
            .issuer_name(issuer).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))


def init_ca(directory: Path, days: int = CA_DAYS, force: bool = False) -> Issued:
    directory = Path(directory)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and not force:
        raise FailedPrecondition(f"{cert_path} exists; reuse it, or pass --force to replace the CA (every "
                                 "certificate it issued stops being trusted)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Solo CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Solo")])
    builder = _builder("Solo CA", name, key.public_key(), days)
    cert = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return Issued(cert_path, key_path, cert.not_valid_after_utc)


def _load_ca(directory: Path):
    cert_path, key_path = Path(directory) / "ca.crt", Path(directory) / "ca.key"
    if not key_path.exists():
        raise FailedPrecondition(f"no CA in {directory}: run `solo certs init` first")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return cert, key


def _issue(directory: Path, name: str, out: Path, days: int, sans: list[x509.GeneralName], server: bool,
           client: bool = False) -> Issued:
    """`server`/`client`: the certificate may serve TLS / authenticate as a TLS client (a node does both)."""
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = [oid for oid, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, server),
                                     (ExtendedKeyUsageOID.CLIENT_AUTH, client or not server)) if wanted]
    cert = (_builder(name, ca_cert.subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_path, cert_path = out.with_suffix(".key"), out.with_suffix(".crt")
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return Issued(cert_path, key_path, cert.not_valid_after_utc)


def _names(hosts) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys(h for h in hosts if h):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return sans


def issue_server(directory: Path, hosts: list[str] = (), days: int = SERVER_DAYS) -> Issued:
    """The gateway's certificate, valid for localhost, 127.0.0.1, this host's name and `hosts`."""
    sans = _names(["localhost", "127.0.0.1", "::1", socket.gethostname(), *hosts])
    return _issue(directory, "Solo gateway", Path(directory) / "server", days, sans, server=True)


def issue_node(directory: Path, name: str, hosts: list[str] = (), days: int = NODE_DAYS,
               out: Path | None = None, force: bool = False) -> Issued:
    """A node's certificate for the call channel ([tls] hosts), in `out` (default <tls-dir>/nodes/<name>/) with
    the CA's certificate beside it: the directory each node mounts as `[tls] node_dir`. Both a server (its
    hosts' call ports) and a client (its gateway, its services' direct calls); `hosts` (names, IPs) go in the
    SANs too, so the same files can serve Ray's own TLS, which checks them."""
    validate_name(name, "node name")
    target = Path(out) if out is not None else Path(directory) / "nodes" / name
    if (target / "node.key").exists() and not force:
        raise FailedPrecondition(f"{target} already holds a node certificate; pass --force to replace it")
    sans = [x509.UniformResourceIdentifier(NODE_URI + name), *_names(["localhost", "127.0.0.1", *hosts])]
    issued = _issue(directory, f"Solo node {name}", target / "node", days, sans, server=True, client=True)
    _write(target / "ca.crt", (Path(directory) / "ca.crt").read_bytes(), private=False)
    return issued


def issue_client(directory: Path, name: str, tenant: str | None = None, days: int = CLIENT_DAYS) -> Issued:
    """A client certificate `clients/<name>`; with `tenant`, bound to that tenant."""
    validate_name(name, "certificate name")
    if tenant is not None:
        validate_name(tenant, "tenant name")
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    if tenant:
        sans.append(x509.UniformResourceIdentifier(TENANT_URI + tenant))
    return _issue(directory, name, Path(directory) / "clients" / name, days, sans, server=False)


def _named(auth_context: dict, prefix: str) -> str | None:
    """The rest of the first SAN of a verified client certificate (gRPC's auth context) that starts with `prefix`."""
    for value in auth_context.get("x509_subject_alternative_name", ()):
        text = value.decode() if isinstance(value, bytes) else value
        if text.startswith(prefix):
            return text[len(prefix):]
    return None


def bound_tenant(auth_context: dict) -> str | None:
    """The tenant a verified client certificate is bound to, if any."""
    return _named(auth_context, TENANT_URI)


def is_node(auth_context: dict) -> bool:
    """Whether a verified client certificate is a node's (solo://node/...): nodes hold theirs on every machine of
    the cluster, for the call channel; it is no client's certificate at the gateway."""
    return _named(auth_context, NODE_URI) is not None


def check_days(days: int) -> int:
    if not 1 <= days <= 20 * 365:
        raise InvalidRequest("--days must be between 1 and 7300")
    return days


__all__ = ["Issued", "NODE_URI", "TENANT_URI", "bound_tenant", "init_ca", "is_node", "issue_client", "issue_node",
           "issue_server"]
