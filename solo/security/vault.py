"""The vault: tenants' secrets encrypted at rest with envelope encryption. Pure: no Ray, no gRPC.

Each version of a secret is encrypted with its own random 256-bit data key (AES-256-GCM, a fresh
nonce). The data key is stored only wrapped (encrypted, AES-256-GCM too) by the master key, whose id
is stored beside it. Both encryptions take associated data naming the tenant, the key and the
version (the wrap also the master key's id), so a ciphertext moved to another tenant, key or
version, or altered, does not decrypt: it is reported, never returned.

On disk (the registry is the only writer):

    <vault dir>/master-<id>.key     a master key (0600), the active one named by <vault dir>/active
    <vault dir>/tenants/<t>.json    one tenant's secrets: per key its versions' ciphertexts and wrapped
                                    data keys (0600 in 0700 directories; key names are not encrypted)

or, with `[vault] master_key_file`, the master key in that file (e.g. a mounted Kubernetes Secret)
and `<file>.retiring` beside it during a rotation. Every file is written under a temporary name,
fsynced and renamed, then its directory fsynced: a crash leaves the old content or the new.

Rotation of the master key: (1) the new key is written, (2) made active (new puts use it),
(3) every data key still wrapped by another key is re-wrapped, one tenant file at a time, (4) the
old key files are deleted. Opening the vault finishes a rotation a crash interrupted at any step:
both keys are still on disk until every file is re-wrapped.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from solo.core.spec import NAME_RE
from solo.errors import FailedPrecondition, InvalidRequest, NotFound, Overloaded
from solo.files import write_atomic

KEY_RE = re.compile(r"[A-Za-z0-9_./:-]{1,127}")  # capabilities._SECRET_PATTERN without the prefix star
FORMAT = 1
SEAL_PURPOSE = "service secrets"  # what the registry seals a service's secrets to its host for (security/seal.py)
_NONCE = 12
_MASTER_FILE = re.compile(r"master-([0-9a-f]{16})\.key")
log = logging.getLogger("solo.vault")
CACHED_TENANTS = 32  # tenants' files kept parsed in memory (the most recently used)
WRITE_BUDGETS = 100_000  # tenants whose write budgets are remembered (the least recently writing forgotten)


class VaultCorrupt(Exception):
    """A ciphertext or wrapped key that does not decrypt (altered, moved, or its master key lost)."""


@dataclass(frozen=True)
class VaultLimits:
    max_secret_bytes: int = 64 * 1024
    max_secrets_per_tenant: int = 1000
    max_versions_per_key: int = 10
    max_tenant_bytes: int = 8 << 20
    write_bytes_per_second: int = 1 << 20  # a tenant's file rewrites (each put and delete rewrites and fsyncs it)


@dataclass(frozen=True)
class Version:
    key: str
    version: int
    created_at: float
    value: bytes = b""


@dataclass(frozen=True)
class SecretInfo:
    key: str
    version: int
    versions: int
    created_at: float
    updated_at: float


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        shown = key[:64] if isinstance(key, str) else key
        raise InvalidRequest(f"invalid secret key {shown!r}: use 1-127 letters, digits and '_', '.', '/', ':', '-' "
                             "(e.g. db/password)")
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def key_id(master: bytes) -> str:
    """A master key's id: derived from the key, so a file cannot claim another key's id."""
    return hashlib.sha256(b"solo-vault-master-key\0" + master).hexdigest()[:16]


def _value_ad(tenant: str, key: str, version: int) -> bytes:
    return f"solo-vault/v1\0value\0{tenant}\0{key}\0{version}".encode()


def _wrap_ad(kid: str, tenant: str, key: str, version: int) -> bytes:
    return f"solo-vault/v1\0data-key\0{kid}\0{tenant}\0{key}\0{version}".encode()


def seal_value(masters: dict[str, bytes], kid: str, tenant: str, key: str, version: int, value: bytes,
               random: Callable[[int], bytes] = os.urandom) -> dict:
    """One version's record: the value under a new data key, the data key wrapped by master `kid`."""
    data_key = random(32)
    nonce = random(_NONCE)
    ciphertext = AESGCM(data_key).encrypt(nonce, value, _value_ad(tenant, key, version))
    return {"nonce": _b64(nonce), "ciphertext": _b64(ciphertext),
            **_wrap(masters[kid], kid, tenant, key, version, data_key, random)}


def _wrap(master: bytes, kid: str, tenant: str, key: str, version: int, data_key: bytes,
          random: Callable[[int], bytes]) -> dict:
    nonce = random(_NONCE)
    return {"kid": kid, "wrapped": _b64(nonce + AESGCM(master).encrypt(nonce, data_key,
                                                                      _wrap_ad(kid, tenant, key, version)))}


def _unwrap(masters: dict[str, bytes], record: dict, tenant: str, key: str, version: int) -> bytes:
    kid = record.get("kid")
    master = masters.get(kid)
    if master is None:
        raise VaultCorrupt(f"its data key is wrapped by master key {kid!r}, which is not on this vault")
    try:
        wrapped = _unb64(record["wrapped"])
        return AESGCM(master).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _wrap_ad(kid, tenant, key, version))
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise VaultCorrupt("its wrapped data key does not decrypt (altered, or moved from another secret)") from None


def open_value(masters: dict[str, bytes], record: dict, tenant: str, key: str, version: int) -> bytes:
    data_key = _unwrap(masters, record, tenant, key, version)
    try:
        return AESGCM(data_key).decrypt(_unb64(record["nonce"]), _unb64(record["ciphertext"]),
                                        _value_ad(tenant, key, version))
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise VaultCorrupt("its ciphertext does not decrypt (altered, or moved from another secret)") from None


def rewrap(masters: dict[str, bytes], kid: str, record: dict, tenant: str, key: str, version: int,
           random: Callable[[int], bytes] = os.urandom) -> dict:
    """The record with its data key wrapped by master `kid` instead (the ciphertext is unchanged)."""
    data_key = _unwrap(masters, record, tenant, key, version)
    return {**record, **_wrap(masters[kid], kid, tenant, key, version, data_key, random)}


def write_durably(path: Path, data: str | bytes) -> None:
    """write_atomic (temporary name, fsync, rename), then fsync the directory so the rename survives a crash."""
    write_atomic(path, data, 0o600)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _well_formed(data: dict) -> bool:
    """The structure of a tenant's file (json.loads of it), so a damaged one is a clear error, never a KeyError."""
    keys = data.get("keys")
    if not isinstance(keys, dict):
        return False
    for key, entry in keys.items():
        if not isinstance(key, str) or not KEY_RE.fullmatch(key) or not isinstance(entry, dict):
            return False
        versions = entry.get("versions")
        if not isinstance(entry.get("next"), int) or not _number(entry.get("created_at")) or \
                not isinstance(versions, list) or not versions:
            return False
        for record in versions:
            if not isinstance(record, dict) or not isinstance(record.get("version"), int) or \
                    not _number(record.get("created_at")) or \
                    not all(isinstance(record.get(f), str) for f in ("kid", "wrapped", "nonce", "ciphertext")):
                return False
    return True


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _read_key(path: Path) -> bytes:
    try:
        raw = _unb64(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"the vault's master key file {path} cannot be read ({type(exc).__name__}); "
                                 "restore it from your backup") from None
    if len(raw) != 32:
        raise FailedPrecondition(f"{path} does not hold a 256-bit master key (base64 of 32 bytes); restore it "
                                 "from your backup")
    return raw


class DataDirKeys:
    """Master keys in the vault directory: master-<id>.key files and `active` naming the one in use."""

    def __init__(self, directory: Path, write: Callable[[Path, str], None]):
        self.directory, self.write = directory, write

    def load(self) -> tuple[str | None, dict[str, bytes]]:
        keys = {}
        for path in self.directory.glob("master-*.key"):
            match = _MASTER_FILE.fullmatch(path.name)
            if match:
                raw = _read_key(path)
                if key_id(raw) != match.group(1):
                    raise FailedPrecondition(f"{path} holds a key whose id is not {match.group(1)}; restore the "
                                             "vault's key files from your backup")
                keys[match.group(1)] = raw
        try:
            active = (self.directory / "active").read_text().strip()
        except FileNotFoundError:
            active = None
        if active is not None and active not in keys:
            raise FailedPrecondition(f"the vault's active master key {active} is missing "
                                     f"({self.directory}/master-{active}.key); restore it from your backup")
        return active, keys

    def add(self, raw: bytes) -> None:
        self.write(self.directory / f"master-{key_id(raw)}.key", _b64(raw) + "\n")

    def activate(self, kid: str) -> None:
        self.write(self.directory / "active", kid + "\n")

    def retire(self, keep: str) -> None:
        for path in self.directory.glob("master-*.key"):
            if path.name != f"master-{keep}.key":
                path.unlink(missing_ok=True)


class FileKeys:
    """The master key in a file of the operator's choosing (`[vault] master_key_file`), e.g. a mounted
    Kubernetes Secret; during a rotation the old key waits in `<file>.retiring` beside it."""

    def __init__(self, path: Path, write: Callable[[Path, str], None]):
        self.path, self.write = path, write
        self.retiring = path.with_name(path.name + ".retiring")

    def load(self) -> tuple[str | None, dict[str, bytes]]:
        if not self.path.exists():
            raise FailedPrecondition(f"[vault] master_key_file {self.path} does not exist; create it with 32 random "
                                     "bytes in base64 (`head -c 32 /dev/urandom | base64`), or unset it to keep the "
                                     "key in the data directory")
        raw = _read_key(self.path)
        keys = {key_id(raw): raw}
        if self.retiring.exists():
            old = _read_key(self.retiring)
            keys[key_id(old)] = old
        return key_id(raw), keys

    def add(self, raw: bytes) -> None:
        current = _read_key(self.path)
        try:
            self.write(self.retiring, _b64(current) + "\n")
            self.write(self.path, _b64(raw) + "\n")
        except OSError as exc:
            raise FailedPrecondition(f"cannot write the new master key to [vault] master_key_file {self.path} "
                                     f"({exc.strerror or exc}); a read-only mount (a Kubernetes Secret) cannot be "
                                     "rotated from Solo: see OPERATIONS.md, Secrets") from None

    def activate(self, kid: str) -> None:
        pass  # the file is the active key

    def retire(self, keep: str) -> None:
        try:
            self.retiring.unlink(missing_ok=True)
        except OSError:  # a read-only mount (an offline rotation, OPERATIONS.md): its owner removes it
            pass


class Vault:
    """All tenants' secrets in one directory. One caller at a time per tenant; opening and `rotate` alone
    (registry/vault.py's VaultGate)."""

    def __init__(self, directory: Path, limits: VaultLimits = VaultLimits(), master_key_file: Path | None = None,
                 clock: Callable[[], float] = time.time, random: Callable[[int], bytes] = os.urandom,
                 write: Callable[[Path, str], None] = write_durably):
        self.directory = _private_dir(Path(directory))
        self.tenants_dir = _private_dir(self.directory / "tenants")
        self.limits, self.clock, self.random, self.write = limits, clock, random, write
        self.keys = FileKeys(Path(master_key_file), write) if master_key_file else DataDirKeys(self.directory, write)
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._cache_lock = threading.Lock()  # tenants' operations run in parallel threads
        self.unreadable: list[tuple[str, str, int]] = []  # versions the last rotation could not re-wrap
        self.skipped: list[str] = []  # tenants whose files the last rotation could not read (old key kept)
        self._budgets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tenant -> (bytes left, when)
        for stray in [*self.directory.glob("*.tmp"), *self.tenants_dir.glob("*.tmp")]:
            stray.unlink(missing_ok=True)  # a write a crash cut short (its file holds the old content)
        self.active, self.masters = self._open()

    # -- master keys -----------------------------------------------------------------------------
    def _open(self) -> tuple[str, dict[str, bytes]]:
        active, masters = self.keys.load()
        if active is None and any(self.tenants_dir.glob("*.json")):
            raise FailedPrecondition(f"the vault's master key is missing from {self.directory} but tenant files "
                                     f"exist in {self.tenants_dir}: restore the key (master-<id>.key and `active`) "
                                     "from your backup, or point [vault] master_key_file at it; a new key would not "
                                     "open them")
        if active is None:  # a new vault (data directory): its first key
            raw = self.random(32)
            self.keys.add(raw)
            self.keys.activate(key_id(raw))
            active, masters = self.keys.load()
        self.active, self.masters = active, masters
        if len(masters) > 1:
            self.finish_rotation()  # a rotation was interrupted: finish it before anything else
        else:
            self.keys.retire(self.active)  # a rotation cut short before its new key was in use
        return self.active, self.masters

    def rotate(self) -> tuple[str, int]:
        """A new master key; every data key re-wrapped under it; the old key deleted. Returns (id, re-wrapped)."""
        if len(self.masters) > 1:  # an earlier rotation kept its old key for files it could not read: again
            self.finish_rotation()
        if self.skipped:
            raise FailedPrecondition(f"the last rotation could not re-wrap the vault files of {len(self.skipped)} "
                                     f"tenant(s) ({', '.join(self.skipped[:5])}; the head's log names the problem) "
                                     "and keeps their old master key: restore those files from a backup (or remove "
                                     "them), then rotate again")
        raw = self.random(32)
        self.keys.add(raw)                       # (1) on disk beside the old one
        self.masters[key_id(raw)] = raw
        self.keys.activate(key_id(raw))          # (2) new puts use it
        self.active = key_id(raw)
        return self.active, self.finish_rotation()

    def finish_rotation(self) -> int:
        """(3) re-wrap every data key not under the active key, one tenant file at a time; (4) retire the others.
        A tenant file that cannot be read is skipped (and said): the old keys are kept until it is fixed, and
        the next open (or rotation) finishes it; the other tenants are served meanwhile."""
        rewrapped, self.unreadable, self.skipped = 0, [], []
        for path in sorted(self.tenants_dir.glob("*.json")):
            tenant = path.stem
            if not NAME_RE.fullmatch(tenant):
                continue
            try:
                data = self._load(tenant)
            except FailedPrecondition as exc:
                log.warning("the vault's rotation skipped tenant %s, kept its old master key: %s", tenant, exc.message)
                self.skipped.append(tenant)
                continue
            keys, changed = {}, 0
            for key, entry in data["keys"].items():
                versions = []
                for record in entry["versions"]:
                    if record["kid"] != self.active:
                        try:
                            record = rewrap(self.masters, self.active, record, tenant, key, record["version"],
                                            self.random)
                            changed += 1
                        except VaultCorrupt:  # unreadable before the rotation too: left as it is, and said
                            self.unreadable.append((tenant, key, record["version"]))
                    versions.append(record)
                keys[key] = {**entry, "versions": versions}
            if changed:
                self._save(tenant, {**data, "keys": keys})
                rewrapped += changed
        if not self.skipped:
            self.keys.retire(self.active)
            self.masters = {self.active: self.masters[self.active]}
        return rewrapped

    # -- tenant files ------------------------------------------------------------------------------
    def _path(self, tenant: str) -> Path:
        if not isinstance(tenant, str) or not NAME_RE.fullmatch(tenant):
            raise InvalidRequest(f"invalid tenant name {tenant!r}")
        return self.tenants_dir / f"{tenant}.json"

    def _remember(self, tenant: str, data: dict) -> None:
        with self._cache_lock:
            self._cache[tenant] = data
            self._cache.move_to_end(tenant)
            while len(self._cache) > CACHED_TENANTS:
                self._cache.popitem(last=False)

    def _load(self, tenant: str) -> dict:
        with self._cache_lock:
            cached = self._cache.get(tenant)
        if cached is not None:
            return cached
        path = self._path(tenant)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {"format": FORMAT, "tenant": tenant, "keys": {}}
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(f"{path} cannot be read ({type(exc).__name__}); restore it from a backup") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("tenant") != tenant:
            raise FailedPrecondition(f"{path} is not a vault file of tenant {tenant!r}; restore it from a backup")
        if not _well_formed(data):
            raise FailedPrecondition(f"{path} is damaged (a secret or version without the fields a vault file "
                                     f"holds); restore it from a backup (only tenant {tenant!r} is affected)")
        self._remember(tenant, data)
        return data

    def _spend(self, tenant: str, size: int) -> None:
        """A put or delete rewrites (and fsyncs) the tenant's whole file: its bytes are charged to the tenant's
        budget of [vault] write_bytes_per_second (one second's worth at most saved up). A write is refused while
        the budget is in debt, so one tenant's disk writes stay under that rate plus one file."""
        rate = self.limits.write_bytes_per_second
        now = self.clock()
        with self._cache_lock:
            left, when = self._budgets.pop(tenant, (float(rate), now))
            left = min(float(rate), left + max(0.0, now - when) * rate)
            if left < 0:
                self._budgets[tenant] = (left, now)
                raise Overloaded(f"tenant {tenant!r} rewrote its vault file faster than [vault] write_bytes_per_second "
                                 f"({rate} bytes; each put or delete rewrites all its secrets); retry in "
                                 f"{-left / rate:.1f}s, or keep fewer or smaller versions")
            self._budgets[tenant] = (left - size, now)
            while len(self._budgets) > WRITE_BUDGETS:
                self._budgets.popitem(last=False)

    def _save(self, tenant: str, data: dict, charged: bool = False) -> None:
        path = self._path(tenant)
        if data["keys"]:
            text = json.dumps(data, sort_keys=True)
            if charged:
                self._spend(tenant, len(text))
            self.write(path, text)
        else:
            path.unlink(missing_ok=True)
        self._remember(tenant, data)

    def _stored_bytes(self, data: dict) -> int:
        return sum(len(r["ciphertext"]) * 3 // 4 for e in data["keys"].values() for r in e["versions"])

    # -- operations --------------------------------------------------------------------------------
    def put(self, tenant: str, key: str, value: bytes) -> Version:
        validate_key(key)
        if not isinstance(value, bytes):
            raise InvalidRequest("a secret's value is bytes")
        if len(value) > self.limits.max_secret_bytes:
            raise InvalidRequest(f"the value is {len(value)} bytes, over [vault] max_secret_bytes "
                                 f"({self.limits.max_secret_bytes}); store a smaller secret (a key, not a file of them)")
        data = self._load(tenant)
        entry = data["keys"].get(key)
        if entry is None and len(data["keys"]) >= self.limits.max_secrets_per_tenant:
            raise Overloaded(f"tenant {tenant!r} has {len(data['keys'])} secrets, the most [vault] "
                             "max_secrets_per_tenant allows; remove some (`solo secrets rm`) first")
        now = self.clock()
        version = entry["next"] if entry else 1
        record = {"version": version, "created_at": now,
                  **seal_value(self.masters, self.active, tenant, key, version, value, self.random)}
        kept = ([*entry["versions"], record] if entry else [record])[-self.limits.max_versions_per_key:]
        new_entry = {"next": version + 1, "created_at": entry["created_at"] if entry else now, "versions": kept}
        new_data = {**data, "keys": {**data["keys"], key: new_entry}}
        if self._stored_bytes(new_data) > self.limits.max_tenant_bytes:
            raise Overloaded(f"tenant {tenant!r} would store more than [vault] max_tenant_bytes "
                             f"({self.limits.max_tenant_bytes} bytes, every version kept counts); remove secrets "
                             "(`solo secrets rm`) first")
        self._save(tenant, new_data, charged=True)
        return Version(key, version, now)

    def _entry(self, tenant: str, key: str) -> dict:
        validate_key(key)
        entry = self._load(tenant)["keys"].get(key)
        if entry is None:  # the same answer whether no tenant has it or another one does
            raise NotFound(f"secret {key!r} not found; `solo secrets ls` lists yours")
        return entry

    def get(self, tenant: str, key: str, version: int = 0) -> Version:
        entry = self._entry(tenant, key)
        versions = entry["versions"]
        record = versions[-1] if not version else next((r for r in versions if r["version"] == version), None)
        if record is None:
            kept = ", ".join(str(r["version"]) for r in versions)
            raise NotFound(f"secret {key!r} has no version {version}; the versions kept are {kept}")
        try:
            value = open_value(self.masters, record, tenant, key, record["version"])
        except VaultCorrupt as exc:
            raise FailedPrecondition(f"secret {key!r} version {record['version']} cannot be decrypted: {exc}; "
                                     "put it again, or restore the vault from a backup") from None
        return Version(key, record["version"], record["created_at"], value)

    def versions(self, tenant: str, key: str) -> list[int]:
        return [r["version"] for r in self._entry(tenant, key)["versions"]]

    def list(self, tenant: str, prefix: str = "") -> list[SecretInfo]:
        if prefix and not KEY_RE.fullmatch(prefix):
            raise InvalidRequest(f"invalid prefix {prefix[:64]!r}: a prefix of a key, e.g. db/")
        return [SecretInfo(key, e["versions"][-1]["version"], len(e["versions"]), e["created_at"],
                           e["versions"][-1]["created_at"])
                for key, e in sorted(self._load(tenant)["keys"].items()) if key.startswith(prefix)]

    def delete(self, tenant: str, key: str) -> int:
        entry = self._entry(tenant, key)
        data = self._load(tenant)
        self._save(tenant, {**data, "keys": {k: v for k, v in data["keys"].items() if k != key}}, charged=True)
        return len(entry["versions"])


MIN_SCRUBBED = 4  # shorter values are not looked for in text (they would garble it; they protect nothing anyway)


def scrubber(opened: dict[str, str], env: dict[str, str] | None = None) -> Callable[[str], str]:
    """What a host passes every text of its service through before it leaves the host (load, health, stop and
    hook failures): each vault value given to the service (`opened`: key -> base64, as sealed to the host)
    becomes [secret KEY], and each env value [env NAME] (events/redact.py)."""
    from solo.events.redact import redact_text
    values = {}
    for key, encoded in opened.items():
        try:
            value = base64.b64decode(encoded).decode("utf-8", "replace")
        except ValueError:
            continue
        if len(value) >= MIN_SCRUBBED:
            values[key] = value
    ordered = sorted(values.items(), key=lambda kv: -len(kv[1]))
    env = dict(env or {})

    def scrub(text: str) -> str:
        for key, value in ordered:
            if value in text:
                text = text.replace(value, f"[secret {key}]")
        return redact_text(text, env)
    return scrub


__all__ = ["KEY_RE", "SEAL_PURPOSE", "scrubber", "SecretInfo", "Vault", "VaultCorrupt", "VaultLimits", "Version", "key_id", "open_value",
           "rewrap", "seal_value", "validate_key", "write_durably"]
