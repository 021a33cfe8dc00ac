"""The root keys that sign capability tokens (Ed25519, via biscuit-auth).

    <data-dir>/keys/keys.json       {"active": 2, "keys": {"1": {"public": hex, "created_at": t,
                                     "retired_at": t, "valid_until": t}, "2": {...}}}   (0600)
    <data-dir>/keys/root-<id>.key   the private key, hex (0600; the folder is 0700)

The first start generates key 1. `rotate()` makes a new active key; tokens signed by the old
one keep working until its `valid_until` (the rotation time plus a cut-off), then are refused.
Every token carries the id of the key that signed it (Biscuit's root key id).
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import biscuit_auth as biscuit

from solo.errors import Unauthenticated
from solo.files import write_atomic

ALGORITHM = biscuit.Algorithm.Ed25519


@dataclass(frozen=True)
class KeyInfo:
    key_id: int
    public_hex: str
    created_at: float
    retired_at: float | None = None
    valid_until: float | None = None  # tokens of a retired key are refused after this


class KeyRing:
    """The root keys of one data directory; safe to share between threads."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._signature: tuple = ()
        self._keys: dict[int, KeyInfo] = {}
        self._public: dict[int, biscuit.PublicKey] = {}
        self.active = 0
        self._ensure()

    # -- files ---------------------------------------------------------------------------------
    @property
    def _index(self) -> Path:
        return self.directory / "keys.json"

    def _ensure(self) -> None:
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            if not self._index.exists():
                self._create_key(1, {})
            self._load()

    def _load(self) -> None:
        st = self._index.stat()
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if signature == self._signature:
            return
        data = json.loads(self._index.read_text())
        self._keys = {int(k): KeyInfo(int(k), v["public"], v["created_at"], v.get("retired_at"), v.get("valid_until"))
                      for k, v in data["keys"].items()}
        self._public = {k: biscuit.PublicKey.from_bytes(bytes.fromhex(v.public_hex), ALGORITHM)
                        for k, v in self._keys.items()}
        self.active = int(data["active"])
        self._signature = signature

    def _write(self, keys: dict[int, KeyInfo], active: int) -> None:
        write_atomic(self._index, json.dumps({"active": active, "keys": {
            str(k): {"public": v.public_hex, "created_at": v.created_at, "retired_at": v.retired_at,
                     "valid_until": v.valid_until} for k, v in sorted(keys.items())}}, indent=1))

    def _create_key(self, key_id: int, keys: dict[int, KeyInfo]) -> None:
        pair = biscuit.KeyPair()
        write_atomic(self.directory / f"root-{key_id}.key", pair.private_key.to_bytes().hex() + "\n")
        keys = {**keys, key_id: KeyInfo(key_id, pair.public_key.to_bytes().hex(), time.time())}
        self._write(keys, key_id)

    # -- use -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up a rotation made by another process (cheap when nothing changed)."""
        with self._lock:
            self._load()

    def private_key(self) -> tuple[int, biscuit.PrivateKey]:
        """The active key (id, private key) for minting."""
        self.refresh()
        text = (self.directory / f"root-{self.active}.key").read_text().strip()
        return self.active, biscuit.PrivateKey.from_bytes(bytes.fromhex(text), ALGORITHM)

    def public_key(self, key_id: int | None, now: float | None = None) -> biscuit.PublicKey:
        """The key that verifies a token signed with `key_id`; refuses unknown and cut-off keys."""
        info = self._keys.get(key_id) if key_id is not None else None
        if info is None:
            self.refresh()
            info = self._keys.get(key_id) if key_id is not None else None
        if info is None:
            raise Unauthenticated(f"the token was signed by an unknown key (key id {key_id}); ask for a new token")
        if info.valid_until is not None and (now or time.time()) > info.valid_until:
            raise Unauthenticated(f"the token was signed by key {key_id}, retired and no longer accepted since "
                                  f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(info.valid_until))}; "
                                  "ask for a new token")
        return self._public[key_id]

    def keys(self) -> list[KeyInfo]:
        self.refresh()
        return [self._keys[k] for k in sorted(self._keys)]

    def public_keys(self) -> dict[int, str]:
        """Every key still accepted, as hex public keys (what offline attenuation needs)."""
        return {k.key_id: k.public_hex for k in self.keys() if k.valid_until is None or k.valid_until > time.time()}

    def rotate(self, cutoff_seconds: float) -> int:
        """Make a new active key; the old active key keeps verifying for `cutoff_seconds`."""
        with self._lock:
            self._load()
            now = time.time()
            old = self._keys[self.active]
            keys = dict(self._keys)
            keys[old.key_id] = KeyInfo(old.key_id, old.public_hex, old.created_at, now, now + cutoff_seconds)
            new_id = max(keys) + 1
            self._create_key(new_id, keys)
            self._load()
            return new_id


__all__ = ["KeyInfo", "KeyRing"]
