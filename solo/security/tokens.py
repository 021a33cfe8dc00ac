"""Interim identity: opaque bearer tokens mapped to a tenant (the capability-token issue replaces it).

Only SHA-256 hashes of tokens are stored (`<data-dir>/tokens.json`, mode 0600), so the file never
holds a usable credential. The gateway resolves every call through `Authenticator.authenticate`;
nothing trusts a tenant named in a request body.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from solo.core.spec import validate_name
from solo.errors import PermissionDenied, Unauthenticated

TOKEN_PREFIX = "solo_"
OPERATOR_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    tenant: str
    operator: bool = False
    token_id: str = ""  # the first characters of the token's hash: safe to log, useless to replay

    @property
    def label(self) -> str:
        return f"{'operator' if self.operator else 'tenant'}:{self.tenant}/token:{self.token_id}"


class Authenticator(Protocol):
    def authenticate(self, metadata: Iterable[tuple[str, str]]) -> Principal: ...

    def mint(self, caller: Principal, tenant: str, description: str = "") -> str: ...


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class TokenStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._signature: tuple = ()
        self._entries: dict[str, dict] = {}
        self._load()

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        # every write replaces the file (new inode), so this notices changes even within one mtime tick
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if signature != self._signature:
            self._entries = json.loads(self.path.read_text() or "{}")
            self._signature = signature

    def lookup(self, token: str) -> Principal | None:
        digest = _hash(token)
        entry = self._entries.get(digest)
        if entry is None:
            with self._lock:
                self._load()  # another gateway process may have minted it
            entry = self._entries.get(digest)
        if entry is None:
            return None
        return Principal(entry["tenant"], entry.get("operator", False), digest[:12])

    def add(self, tenant: str, operator: bool = False, description: str = "") -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._load()
            self._entries[_hash(token)] = {"tenant": tenant, "operator": operator, "description": description,
                                           "created_at": time.time()}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_private(self.path, json.dumps(self._entries, indent=1, sort_keys=True))
            st = self.path.stat()
            self._signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        return token


class BearerAuthenticator:
    """`authorization: Bearer solo_...` metadata → Principal."""

    def __init__(self, store: TokenStore):
        self.store = store

    def authenticate(self, metadata: Iterable[tuple[str, str]]) -> Principal:
        header = next((v for k, v in metadata if k == "authorization"), None)
        if not header:
            raise Unauthenticated("no credentials: send 'authorization: Bearer <token>' metadata "
                                  "(the operator token is written by `solo up`; tenants get one from `solo tokens mint`)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
        principal = self.store.lookup(token.strip())
        if principal is None:
            raise Unauthenticated("unknown or revoked token; ask the operator for a new one (`solo tokens mint`)")
        return principal

    def mint(self, caller: Principal, tenant: str, description: str = "") -> str:
        if not caller.operator:
            raise PermissionDenied("only the operator can mint tokens")
        validate_name(tenant, "tenant name")
        return self.store.add(tenant, operator=False, description=description)


def ensure_operator_token(store: TokenStore, path: Path) -> Path:
    """Write the operator token to `path` (0600) on first start; keep it afterwards."""
    if path.exists() and store.lookup(path.read_text().strip()) is not None:
        return path
    token = store.add(OPERATOR_TENANT, operator=True, description="operator (written by solo up)")
    _write_private(path, token + "\n")
    return path


__all__ = ["Authenticator", "BearerAuthenticator", "Principal", "TokenStore", "ensure_operator_token"]
