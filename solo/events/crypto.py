"""Encryption at rest for the event log (`[events] encrypt = true`): one key, two file formats.

    key = open_key(data_dir / "events", encrypt=True, key_file=None)   # <data-dir>/keys/events.key, made once
    EventLog(data_dir / "events", key=key, encrypt=True)

The key is 32 random bytes (64 hex characters in a 0600 file). It is a key-encryption key: it never
encrypts an event itself.

- Parquet segments use Parquet modular encryption (pyarrow.parquet.encryption): each file gets fresh
  data keys, the footer and every column are encrypted with AES-GCM (the file ends in `PARE`, not
  `PAR1`), and the data keys are wrapped by `_LocalKms`, an in-process KMS that seals them with the
  key (AES-GCM) into the file's own key material. Statistics, the row-group key index and the schema
  are in the encrypted footer, so not even a tenant name is readable without the key.
- WAL files (events/wal.py) start with a header `MAGIC | key id (8) | salt (16)`; each record is
  `length | crc32 | nonce (12) | AES-GCM ciphertext` under a per-file key derived from the key and
  the salt (HKDF-SHA256), with the header and the record's offset as associated data. A file has
  one mode: plaintext files (no header) from before encryption was turned on stay readable.

At start, open_key checks the key against every encrypted file and records its choice in
`<events>/encryption.json` (whether to encrypt, the key file's path, the key id: no secret); the
event-log actor opens its EventLog with that choice (chosen()). Readers find the key of a directory
(key_for): the one the process's EventLog registered, else the key file named in encryption.json,
else `<data-dir>/keys/events.key`. A reader that meets an encrypted file without a key,
or with another key, raises EventKeyError: it never skips such a file, and the WAL is never truncated
because of it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import struct
import threading
from pathlib import Path

import pyarrow.parquet.encryption as pe
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from solo.errors import FailedPrecondition
from solo.files import write_atomic

log = logging.getLogger("solo.events")

KEY_BYTES = 32
KEY_FILE = "events.key"                  # under <data-dir>/keys unless [events] key_file says otherwise
MARKER = "encryption.json"               # in the events directory: {"key_file": path, "key_id": hex}
WAL_MAGIC = b"SOLOWAE1"                  # an encrypted WAL file's first bytes (a plaintext one starts with a length)
WAL_HEADER = struct.Struct(">8s8s16s")   # magic, key id, salt
NONCE = 12
PARQUET_ENCRYPTED = b"PARE"              # the last 4 bytes of a Parquet file with an encrypted footer


class EventKeyError(FailedPrecondition):
    """An encrypted event file and no key, the wrong key, or a record that fails authentication."""


class EventKey:
    """The event log's key: seals WAL records and wraps Parquet data keys. Safe to share between threads."""

    def __init__(self, secret: bytes, path: Path | None = None):
        if len(secret) != KEY_BYTES:
            raise EventKeyError(f"the events key must be {KEY_BYTES} bytes, not {len(secret)}")
        self._secret = secret
        self.path = path
        self.key_id = hashlib.sha256(b"solo events key id\0" + secret).hexdigest()[:16]
        self.master_id = f"solo-events-{self.key_id}"
        self._aead = AESGCM(secret)
        self._factory = pe.CryptoFactory(lambda _config: _LocalKms(self))
        self._kms = pe.KmsConnectionConfig(kms_instance_id="solo-local")
        self._decryption = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"EventKey(id={self.key_id}, path={self.path})"

    # -- wrapping Parquet data keys (called by pyarrow through _LocalKms) -------------------------
    def wrap(self, data_key: bytes, master_id: str) -> str:
        nonce = os.urandom(NONCE)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, data_key, master_id.encode())).decode()

    def unwrap(self, wrapped: str, master_id: str) -> bytes:
        if master_id != self.master_id:
            raise EventKeyError(f"an event segment was encrypted with the events key {master_id.rpartition('-')[2]}, "
                                f"not with this one ({self.key_id}, {self.path or 'given in code'}): point "
                                "[events] key_file at the key it was written with")
        try:
            raw = base64.b64decode(wrapped)
            return self._aead.decrypt(raw[:NONCE], raw[NONCE:], master_id.encode())
        except (InvalidTag, ValueError):
            raise EventKeyError(f"an event segment's data key does not open with the events key {self.key_id}: "
                                "the file was altered or damaged") from None

    def encryption_properties(self):
        """For one new segment: fresh data keys, footer and all columns encrypted (AES-GCM)."""
        config = pe.EncryptionConfiguration(footer_key=self.master_id, uniform_encryption=True,
                                            encryption_algorithm="AES_GCM_V1", plaintext_footer=False,
                                            double_wrapping=False, data_key_length_bits=256)
        return self._factory.file_encryption_properties(self._kms, config)

    def decryption_properties(self):
        """Reusable for every segment this key wrote (and harmless for a plaintext one)."""
        with self._lock:
            if self._decryption is None:
                self._decryption = self._factory.file_decryption_properties(self._kms, pe.DecryptionConfiguration())
            return self._decryption

    # -- WAL records -------------------------------------------------------------------------------
    def new_wal_header(self) -> bytes:
        return WAL_HEADER.pack(WAL_MAGIC, bytes.fromhex(self.key_id), os.urandom(16))

    def wal_cipher(self, header: bytes) -> WalCipher:
        magic, key_id, salt = WAL_HEADER.unpack(header[:WAL_HEADER.size])
        if key_id.hex() != self.key_id:
            raise EventKeyError(f"a WAL file was encrypted with the events key {key_id.hex()}, not with this one "
                                f"({self.key_id}, {self.path or 'given in code'}): point [events] key_file at the "
                                "key it was written with")
        file_key = HKDF(hashes.SHA256(), KEY_BYTES, salt, b"solo events wal v1").derive(self._secret)
        return WalCipher(AESGCM(file_key), header[:WAL_HEADER.size])


class WalCipher:
    """Seals and opens the records of one encrypted WAL file."""

    def __init__(self, aead: AESGCM, header: bytes):
        self._aead, self._header = aead, header

    def seal(self, plaintext: bytes, offset: int) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, self._header + struct.pack(">Q", offset))

    def open(self, sealed: bytes, offset: int, where: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], self._header + struct.pack(">Q", offset))
        except InvalidTag:
            raise EventKeyError(f"{where}: an encrypted record at byte {offset} fails authentication although its "
                                "checksum is right: the file was altered (nothing was truncated)") from None


class _LocalKms(pe.KmsClient):
    """pyarrow's KMS interface over the local key: no server, the key never leaves this process."""

    def __init__(self, key: EventKey):
        super().__init__()
        self._key = key

    def wrap_key(self, key_bytes, master_key_identifier):
        return self._key.wrap(bytes(key_bytes), master_key_identifier)

    def unwrap_key(self, wrapped_key, master_key_identifier):
        return self._key.unwrap(wrapped_key, master_key_identifier)


# -- key files -----------------------------------------------------------------------------------
def default_key_file(directory: Path) -> Path:
    """`<data-dir>/keys/events.key` for the events directory `<data-dir>/events`."""
    return Path(directory).parent / "keys" / KEY_FILE


def load_key(path: Path) -> EventKey:
    path = Path(path).expanduser()
    try:
        text = path.read_text().strip()
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise EventKeyError(f"cannot read the events key {path} ({exc.strerror or exc})") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise EventKeyError(f"{path} is not an events key ({KEY_BYTES * 2} hex characters)")
    if mode & 0o077:
        log.warning("the events key %s is readable by others (mode %o); chmod 600 it", path, mode)
    return EventKey(secret, path)


def create_key(path: Path) -> EventKey:
    path = Path(path).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = os.urandom(KEY_BYTES)
    write_atomic(path, secret.hex() + "\n", 0o600)
    log.info("made the events key %s (back it up apart from the data: without it the encrypted log is lost)", path)
    return EventKey(secret, path)


# -- which files are encrypted -------------------------------------------------------------------
def parquet_encrypted(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return f.read(4) == PARQUET_ENCRYPTED


def wal_encrypted(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(WAL_MAGIC)) == WAL_MAGIC


def encrypted_files(directory: Path) -> list[Path]:
    """The encrypted segments and WAL files under `directory`, oldest first."""
    from solo.events.segments import segment_files
    from solo.events.wal import wal_files
    out = []
    for path in segment_files(directory):
        try:
            if path.stat().st_size >= 8 and parquet_encrypted(path):
                out.append(path)
        except FileNotFoundError:
            continue
    for path in wal_files(directory):
        try:
            if wal_encrypted(path):
                out.append(path)
        except FileNotFoundError:
            continue
    return out


# -- the key of a directory (readers) --------------------------------------------------------------
_registered: dict[Path, EventKey] = {}
_loaded: dict[Path, tuple[tuple, EventKey]] = {}
_registry_lock = threading.Lock()


def register(directory: Path, key: EventKey) -> None:
    """Use `key` for the encrypted files under `directory` in this process (EventLog does this)."""
    with _registry_lock:
        _registered[Path(directory).resolve()] = key


def _candidates(directory: Path) -> list[Path]:
    paths = []
    try:
        named = json.loads((directory / MARKER).read_text()).get("key_file")
        if isinstance(named, str) and named:
            paths.append(Path(named))
    except (OSError, ValueError, AttributeError):
        pass
    paths.append(default_key_file(directory))
    return paths


def key_for(directory: Path) -> EventKey | None:
    """The key for the encrypted files under `directory`, or None if none is registered or on disk."""
    directory = Path(directory).resolve()
    with _registry_lock:
        if directory in _registered:
            return _registered[directory]
    for path in _candidates(directory):
        try:
            st = path.stat()
        except OSError:
            continue
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with _registry_lock:
            cached = _loaded.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        key = load_key(path)
        with _registry_lock:
            _loaded[path] = (stamp, key)
        return key
    return None


def require_key(directory: Path, what: Path) -> EventKey:
    key = key_for(directory)
    if key is None:
        looked = ", ".join(str(p) for p in _candidates(Path(directory).resolve()))
        raise EventKeyError(f"{what} is encrypted and no events key was found (looked for {looked}): restore the "
                            "key file from your backup, or pass key_file= to read_events / events_duckdb")
    return key


def use_key_file(data_dir: str | Path, key_file: str | Path) -> EventKey:
    """For notebooks and scripts: read the encrypted events of `data_dir` with the key in `key_file`."""
    from solo.events.reader import events_dir
    key = load_key(Path(key_file))
    register(events_dir(data_dir), key)
    return key


def decryption_for(path: Path):
    """Decryption properties for reading the segment `path` (None for a plaintext one)."""
    if not parquet_encrypted(path):
        return None
    return require_key(path.parent, path).decryption_properties()


# -- at start ------------------------------------------------------------------------------------
def open_key(directory: Path, encrypt: bool, key_file: Path | str | None = None) -> EventKey | None:
    """The key the event log under `directory` writes (`encrypt`) or reads with; checked before anything
    is read or written, so a missing or wrong key stops Solo's start with a clear error.

    Makes the key file (0600) when encryption is on and there is none yet; refuses to make one while
    encrypted files exist (they would be unreadable with a new key). None when no key is needed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = Path(key_file).expanduser() if key_file else default_key_file(directory)
    encrypted = encrypted_files(directory)
    if path.exists():
        key = load_key(path)
    elif encrypted:
        raise EventKeyError(f"{len(encrypted)} event file(s) under {directory} are encrypted (e.g. {encrypted[0].name}) "
                            f"but the events key {path} does not exist: restore it from your backup, or set "
                            "[events] key_file to where it is. Solo does not start without it: it could neither "
                            "read those events nor rebuild its state from them")
    elif encrypt:
        key = create_key(path)
    else:
        return None
    if not encrypt and not encrypted:
        (directory / MARKER).unlink(missing_ok=True)
        return None
    verify(key, encrypted)
    marker = {"encrypt": bool(encrypt), "key_file": str(path.resolve()), "key_id": key.key_id}
    try:
        current = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        current = None
    if current != marker:
        write_atomic(directory / MARKER, json.dumps(marker) + "\n", 0o600)
    return key


def chosen(directory: Path) -> dict:
    """EventLog's `key` and `encrypt` as open_key chose them for `directory` at start ({} if it chose none)."""
    try:
        marker = json.loads((Path(directory) / MARKER).read_text())
        named = Path(marker["key_file"])
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EventKeyError(f"{Path(directory) / MARKER} cannot be read ({exc!r}); start Solo again to rewrite it") \
            from None
    key = load_key(named)
    if key.key_id != marker.get("key_id"):
        raise EventKeyError(f"the events key {key.path} is {key.key_id}, not {marker.get('key_id')} as chosen at "
                            "start: start Solo again")
    return {"key": key, "encrypt": bool(marker.get("encrypt"))}


def verify(key: EventKey, files: list[Path]) -> None:
    """Every encrypted file opens with `key` (a WAL file's header, a segment's footer); EventKeyError if not."""
    import pyarrow.parquet as pq

    from solo.events.wal import WAL_HEADER_SIZE
    for path in files:
        try:
            if path.suffix == ".log":
                with open(path, "rb") as f:
                    header = f.read(WAL_HEADER_SIZE)
                if len(header) == WAL_HEADER_SIZE:
                    key.wal_cipher(header)
            else:
                pq.read_metadata(path, decryption_properties=key.decryption_properties())
        except FileNotFoundError:
            continue
        except EventKeyError as exc:
            raise EventKeyError(f"{path.name}: {exc.message}") from None
        except OSError as exc:
            raise EventKeyError(f"{path} does not open with the events key {key.key_id} ({exc})") from None


__all__ = ["EventKey", "EventKeyError", "chosen", "create_key", "decryption_for", "encrypted_files", "key_for", "load_key",
           "open_key", "register", "require_key", "use_key_file"]
