"""Mutual TLS on the call channel between gateways and hosts, and between services ([tls] hosts).

Every node holds a certificate from Solo's CA (`solo certs node`) in `[tls] node_dir`: `ca.crt`,
`node.crt`, `node.key`. A host's call port accepts TLS from a client presenting a node certificate
(a gateway, or another node's host calling for its service); the gateway connects with its node's
certificate and checks the host presents one. "A node certificate" means signed by the CA *and*
carrying the URI SAN `solo://node/<name>`: a client certificate issued to a tenant by the same CA
is not one. The host's HMAC handshake (core/handshake.py) still runs inside, so a connection proves
both the node and the host key (or peer ticket).

TLS ends in the host, never in the cell: the node's key must stay out of tenant code's reach. So a
TLS connection is relayed between the TLS socket and a socket pair whose other end the cell gets
(host_listener.py). `mode`: "off"; "remote" (TLS required from other machines, loopback stays
plaintext); "all". Pure apart from reading the three files: no Ray.
"""
from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from solo.core.handshake import HandshakeError
from solo.errors import FailedPrecondition

NODE_URI = "solo://node/"
MODES = ("off", "remote", "all")
FILES = ("ca.crt", "node.crt", "node.key")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def required(mode: str, peer_host: str) -> bool:
    """Whether a connection to or from `peer_host` must use TLS under `mode`."""
    return mode == "all" or (mode == "remote" and not is_loopback(peer_host))


def node_name(ssl_object) -> str:
    """The node an authenticated TLS peer is (its certificate's `solo://node/<name>`), or HandshakeError."""
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "URI" and value.startswith(NODE_URI):
            return value[len(NODE_URI):]
    raise HandshakeError("the other end's certificate is not a Solo node certificate (solo certs node)")


@dataclass
class NodeTls:
    mode: str
    directory: Path
    server: ssl.SSLContext | None = field(default=None, repr=False)  # a host's call port
    client: ssl.SSLContext | None = field(default=None, repr=False)  # a gateway, or a host calling for its cell

    @classmethod
    def load(cls, mode: str, directory: Path | str, where: str = "this node") -> NodeTls | None:
        """None for mode "off"; FailedPrecondition saying what to do when the files are missing or unusable."""
        if mode == "off":
            return None
        if mode not in MODES:
            raise FailedPrecondition(f"[tls] hosts must be one of {', '.join(MODES)}, not {mode!r}")
        tls = cls(mode, Path(directory))
        missing = [name for name in FILES if not (tls.directory / name).is_file()]
        if missing:
            raise FailedPrecondition(
                f"[tls] hosts = {mode!r} but {where} has no {', '.join(missing)} in {tls.directory}: create them with "
                "`solo certs node NAME --host <the node's IP>` and put that directory on every node at [tls] node_dir")
        try:
            tls.server = tls._context(ssl.Purpose.CLIENT_AUTH)
            tls.client = tls._context(ssl.Purpose.SERVER_AUTH)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise FailedPrecondition(f"the node certificate in {tls.directory} cannot be used ({exc}); issue it "
                                     "again with `solo certs node`") from None
        return tls

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        context = ssl.create_default_context(purpose, cafile=str(self.directory / "ca.crt"))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # hosts are reached by IP; the node URI is checked instead (node_name)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(self.directory / "node.crt"), str(self.directory / "node.key"))
        return context

    def required(self, peer_host: str) -> bool:
        return required(self.mode, peer_host)


__all__ = ["MODES", "NODE_URI", "NodeTls", "is_loopback", "node_name", "required"]
