"""Sealing a secret for one recipient: HPKE (RFC 9180; X25519, HKDF-SHA256, AES-128-GCM) from `cryptography`.

Two secrets cross Ray between nodes: a host's key (host -> registry, in the answers of `ready`, `load`
and `describe`) and a peer ticket (registry -> the host that asked, `resolve`). Ray's own channel is
plaintext unless the cluster turns Ray's TLS on, so neither travels as itself: the registry keeps an
X25519 key pair in `<data-dir>/registry.seal` (0600, so a rebuilt registry can still open what hosts
seal) and gives hosts its public key; a host asking for a ticket sends a public key of its own, made
for that one request. A sealed value is `sealed:` + urlsafe base64 of the HPKE ciphertext. Pure: no Ray.
"""
from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from solo.files import write_atomic

SEAL_FILE = "registry.seal"
PREFIX = "sealed:"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
_RAW = serialization.Encoding.Raw


class SealError(ValueError):
    """A sealed value that is malformed, or was sealed for another key, or altered."""


def new_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_text(key: X25519PrivateKey) -> str:
    """The public half, as text that can go anywhere (an actor argument, a Ray call)."""
    return base64.urlsafe_b64encode(key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)).decode()


def load_or_create(data_dir: Path) -> X25519PrivateKey:
    """The registry's key pair (0600 in the data directory), made when there is none. One that exists but cannot
    be read is an error, not replaced: running hosts sealed their keys to it, and a new one would orphan them."""
    path = Path(data_dir) / SEAL_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        key = new_key()
        raw = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        write_atomic(path, base64.urlsafe_b64encode(raw).decode() + "\n", 0o600)
        return key
    except (OSError, UnicodeDecodeError) as exc:
        raise SealError(f"cannot read {path} ({exc}); restore it from a backup, or remove it to make a new one "
                        "(services running now must then be started again)") from None
    try:
        return X25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(text))
    except ValueError:
        raise SealError(f"{path} does not hold a key; restore it from a backup, or remove it to make a new one "
                        "(services running now must then be started again)") from None


def seal(public: str, secret: str, purpose: str) -> str:
    """`secret` readable only by the holder of the private half of `public`; `purpose` binds it to its use
    (a host key cannot be replayed as a ticket)."""
    try:
        recipient = X25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(public))
    except (ValueError, TypeError) as exc:
        raise SealError(f"not an X25519 public key: {exc}") from None
    try:
        sealed = _SUITE.encrypt(secret.encode(), recipient, info=purpose.encode())
    except ValueError as exc:  # a low-order point: no shared key
        raise SealError(f"cannot seal to that public key ({exc})") from None
    return PREFIX + base64.urlsafe_b64encode(sealed).decode()


def open_sealed(key: X25519PrivateKey, sealed: object, purpose: str) -> str:
    if not (isinstance(sealed, str) and sealed.startswith(PREFIX)):
        raise SealError("expected a sealed value")
    try:
        return _SUITE.decrypt(base64.urlsafe_b64decode(sealed[len(PREFIX):]), key, info=purpose.encode()).decode()
    except Exception as exc:  # noqa: BLE001 - InvalidTag, bad base64, bad UTF-8: one answer
        raise SealError(f"cannot open the sealed {purpose} ({type(exc).__name__})") from None


__all__ = ["PREFIX", "SEAL_FILE", "SealError", "load_or_create", "new_key", "open_sealed", "public_text", "seal"]
