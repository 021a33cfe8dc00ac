"""The write-ahead log under the event log: append-only files of checksummed Arrow batches.

A record is `length (u32) | crc32 (u32) | Arrow IPC stream bytes of one batch of events`.
`append()` writes any number of records and fsyncs once (group commit). On open, a record whose
length runs past the end of the file or whose checksum does not match is a torn tail: the file is
truncated there, so what was acknowledged (fsynced) is kept and nothing half-written survives.
Files are named `wal-<first id>.log`; a file is deleted once every event in it is in a segment.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import pyarrow as pa

from solo.events.schema import EVENT_SCHEMA

WAL_RE = re.compile(r"^wal-(\d{20})\.log$")
_HEADER = struct.Struct(">II")


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
    batches, offset = [], 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        try:
            batches.append(decode_batch(data[start:end]))
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
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = None
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
        """Start appending to `wal-<first_id>.log` (the newest file, or a new one)."""
        self.close()
        existing = wal_files(self.directory)
        self.path = existing[-1] if existing else self.directory / f"wal-{first_id:020d}.log"
        created = not self.path.exists()
        self._file = open(self.path, "ab")
        if created:
            fsync_dir(self.directory)

    def append(self, batches: list[pa.RecordBatch]) -> None:
        """Write the batches and fsync once: when this returns, they survive a crash."""
        chunks = []
        for batch in batches:
            payload = encode_batch(batch)
            chunks.append(_HEADER.pack(len(payload), zlib.crc32(payload)))
            chunks.append(payload)
        self._file.write(b"".join(chunks))
        self._file.flush()
        os.fsync(self._file.fileno())

    def rotate(self, first_id: int) -> list[Path]:
        """Begin a new file for ids from `first_id`; returns the older files (to delete once rolled)."""
        older = wal_files(self.directory)
        self.close()
        self.path = self.directory / f"wal-{first_id:020d}.log"
        self._file = open(self.path, "ab")
        fsync_dir(self.directory)
        return [p for p in older if p != self.path]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=EVENT_SCHEMA)
