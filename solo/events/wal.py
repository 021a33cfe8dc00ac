"""The write-ahead log under the event log: append-only files of checksummed Arrow batches.

A record is `length (u32) | crc32 (u32) | Arrow IPC stream bytes of one batch of events`.
`append()` writes any number of records and fsyncs once (group commit). On open, a record whose
length runs past the end of the file or whose checksum does not match is a torn tail: the file is
truncated there, so what was acknowledged (fsynced) is kept and nothing half-written survives.
Files are named `wal-<first id>.log`; a file is deleted once every event in it is in a segment.

With `[events] encrypt`, a file starts with a header and each record's bytes are sealed (AES-GCM, see
events/crypto.py): `length | crc32 | nonce | ciphertext`, the checksum over what is on disk, so a torn
tail is found the same way. A record whose checksum is right but which fails authentication, or a
file of another key, raises EventKeyError: nothing acknowledged is ever cut off for want of a key.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import pyarrow as pa

from solo.events import crypto
from solo.events.schema import EVENT_SCHEMA

WAL_RE = re.compile(r"^wal-(\d{20})\.log$")
_HEADER = struct.Struct(">II")
WAL_HEADER_SIZE = crypto.WAL_HEADER.size


def encode_batch(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_batch(payload: bytes) -> pa.RecordBatch:
    return pa.ipc.open_stream(payload).read_next_batch()


def wal_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("wal-*.log") if WAL_RE.match(p.name))


def read_records(path: Path) -> tuple[list[pa.RecordBatch], int]:
    """The valid batches of one WAL file and the byte offset where valid data ends."""
    data = path.read_bytes()
    batches, offset, cipher = [], 0, None
    if data[:len(crypto.WAL_MAGIC)] == crypto.WAL_MAGIC or crypto.WAL_MAGIC.startswith(data) and data:
        if len(data) < WAL_HEADER_SIZE:
            return [], 0  # a torn header: the file was just begun, nothing in it was acknowledged
        cipher = crypto.require_key(path.parent, path).wal_cipher(data[:WAL_HEADER_SIZE])
        offset = WAL_HEADER_SIZE
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        payload = data[start:end] if cipher is None else cipher.open(data[start:end], offset, path.name)
        try:
            batches.append(decode_batch(payload))
        except (pa.ArrowInvalid, OSError):
            break
        offset = end
    return batches, offset


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """`key`: seal every record with it (None: plaintext records). Files of the other mode stay readable."""

    def __init__(self, directory: Path, key: crypto.EventKey | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = key
        self._file = None
        self._cipher: crypto.WalCipher | None = None
        self.path: Path | None = None
        self.truncated_bytes = 0

    def recover(self) -> list[pa.RecordBatch]:
        """Every acknowledged batch still in the WAL, in order; torn tails are cut off."""
        batches = []
        for path in wal_files(self.directory):
            found, valid_end = read_records(path)
            size = path.stat().st_size
            if valid_end < size:
                self.truncated_bytes += size - valid_end
                with open(path, "rb+") as f:
                    f.truncate(valid_end)
                    os.fsync(f.fileno())
            batches.extend(found)
        return batches

    def open(self, first_id: int) -> None:
        """Start appending to `wal-<first_id>.log` (the newest file if it is of this log's mode, or a new one)."""
        self.close()
        existing = wal_files(self.directory)
        path = existing[-1] if existing else self.directory / f"wal-{first_id:020d}.log"
        if path.exists() and path.stat().st_size and not self._same_mode(path):
            path = self.directory / f"wal-{first_id:020d}.log"  # encryption turned on or off: a new file
        self._begin(path)

    def _same_mode(self, path: Path) -> bool:
        with open(path, "rb") as f:
            header = f.read(WAL_HEADER_SIZE)
        if not header.startswith(crypto.WAL_MAGIC):
            return self.key is None
        return self.key is not None and header[len(crypto.WAL_MAGIC):16].hex() == self.key.key_id

    def _begin(self, path: Path) -> None:
        """Open `path` for appending; an empty file (new, or holding nothing acknowledged) gets this log's header."""
        created = not path.exists()
        self.path = path
        self._file = open(path, "ab")
        self._cipher = None
        size = self._file.tell()
        if size and not self._same_mode(path):
            if size > WAL_HEADER_SIZE:  # open() never picks such a file: refuse rather than cut records
                raise RuntimeError(f"{path.name} holds records of the other encryption mode")
            self._file.truncate(0)  # a header or a torn start: nothing acknowledged
            self._file.seek(0)
            size = 0
        if not size and self.key is not None:
            self._file.write(self.key.new_wal_header())
            self._file.flush()
            os.fsync(self._file.fileno())
        if self.key is not None:
            with open(path, "rb") as f:
                self._cipher = self.key.wal_cipher(f.read(WAL_HEADER_SIZE))
        if created:
            fsync_dir(self.directory)

    def append(self, batches: list[pa.RecordBatch]) -> None:
        """Write the batches and fsync once: when this returns, they survive a crash."""
        chunks, offset = [], self._file.tell()
        for batch in batches:
            payload = encode_batch(batch)
            if self._cipher is not None:
                payload = self._cipher.seal(payload, offset)
            chunks.append(_HEADER.pack(len(payload), zlib.crc32(payload)))
            chunks.append(payload)
            offset += _HEADER.size + len(payload)
        self._file.write(b"".join(chunks))
        self._file.flush()
        os.fsync(self._file.fileno())

    def rotate(self, first_id: int) -> list[Path]:
        """Begin a new file for ids from `first_id`; returns the older files (to delete once rolled)."""
        older = wal_files(self.directory)
        self.close()
        self._begin(self.directory / f"wal-{first_id:020d}.log")
        fsync_dir(self.directory)
        return [p for p in older if p != self.path]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=EVENT_SCHEMA)
