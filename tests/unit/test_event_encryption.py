"""[events] encrypt on real files: no plaintext event on disk, the same rows read back, a wrong or missing
key is a clear error (never truncation or skipped files), and plaintext and encrypted files read together."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from solo.events import crypto, read_events
from solo.events.crypto import EventKeyError, open_key
from solo.events.log import EventLog
from solo.events.reader import events_duckdb
from solo.events.segments import INDEXES, segment_files
from solo.events.wal import read_records, wal_files

SECRET_TEXT = "zebra-quartz-payload-7731"
TENANT = "tenant-marmalade"
TYPE = "service.kumquat"


def rows(n: int, start: int = 0, tenant: str = TENANT) -> list[dict]:
    return [{"tenant": tenant, "type": TYPE, "subject": f"svc-{i % 3}", "principal": "token:abc",
             "payload": {"note": SECRET_TEXT, "i": i}} for i in range(start, start + n)]


def comparable(table) -> list[dict]:
    return table.to_pylist()


def raw_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def assert_no_plaintext(directory: Path) -> None:
    for name, data in raw_bytes(directory).items():
        for needle in (SECRET_TEXT, TENANT, TYPE, "svc-1", "token:abc"):
            assert needle.encode() not in data, f"{needle!r} in plaintext in {name}"


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "events").mkdir()
    return tmp_path


def fresh_log(data_dir: Path, encrypt: bool = True, **kw) -> EventLog:
    key = open_key(data_dir / "events", encrypt)
    return EventLog(data_dir / "events", key=key, encrypt=encrypt, **kw)


def test_encrypted_log_holds_no_plaintext_after_roll_and_compaction(data_dir):
    events = data_dir / "events"
    log = fresh_log(data_dir, auto_roll=False)
    key_file = data_dir / "keys" / "events.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    for part in range(4):
        log.append(rows(50, part * 50))
        log.roll()
    assert len(segment_files(events)) == 4
    merged = log.compact(small_rows=1000, min_parts=2)
    assert len(merged) == 1 and len(segment_files(events)) == 1
    log.append(rows(7, 200))  # in the WAL only
    expected = read_events(data_dir)
    assert expected.num_rows == 207 and expected.column("id").to_pylist() == list(range(1, 208))
    assert_no_plaintext(events)
    assert all(p.read_bytes()[-4:] == b"PARE" for p in segment_files(events))
    assert all(p.read_bytes()[:8] == crypto.WAL_MAGIC for p in wal_files(events) if p.stat().st_size)
    log.wal.close()

    again = EventLog(events, key=crypto.load_key(key_file), encrypt=True)  # recovery reads the encrypted WAL
    assert again.last_id == 207
    assert comparable(read_events(data_dir)) == comparable(expected)
    assert read_events(data_dir, tenant=TENANT, type=TYPE, subject="svc-1").num_rows == 69
    payloads = {json.loads(p)["note"] for p in read_events(data_dir).column("payload").to_pylist()}
    assert payloads == {SECRET_TEXT}


def test_retention_rewrites_stay_encrypted(data_dir):
    now = [1_000_000.0]
    events = data_dir / "events"
    log = fresh_log(data_dir, auto_roll=False, clock=lambda: now[0])
    log.append(rows(10) + [{"tenant": TENANT, "type": "token.revoked", "subject": "r", "payload": {}}])
    log.roll()
    now[0] += 10 * 86_400
    log.append(rows(5, 100))
    log.roll()
    touched = log.apply_retention(max_age_seconds=86_400)
    assert len(touched) == 1  # the old segment rewritten with only the kept token.revoked
    assert [r["type"] for r in read_events(data_dir).to_pylist()] == ["token.revoked"] + [TYPE] * 5
    assert_no_plaintext(events)


def test_since_and_duckdb_read_encrypted_segments(data_dir):
    log = fresh_log(data_dir, auto_roll=False)
    log.append(rows(20))
    log.roll()
    log.append(rows(5, 20))
    assert log.since(10, limit=100).column("id").to_pylist() == list(range(11, 26))
    con = events_duckdb(data_dir)
    assert con.sql("select count(*) from events").fetchall()[0][0] == 25
    assert con.sql(f"select count(*) from events where tenant = '{TENANT}' and subject = 'svc-0'").fetchall()[0][0] == 9


def test_a_wrong_key_is_a_clear_error_and_cuts_nothing(data_dir, tmp_path_factory):
    events = data_dir / "events"
    log = fresh_log(data_dir, auto_roll=False)
    log.append(rows(10))
    log.roll()
    log.append(rows(3, 10))  # in the WAL
    log.wal.close()
    sizes = {p.name: p.stat().st_size for p in events.iterdir()}
    other = tmp_path_factory.mktemp("other") / "events.key"
    crypto.create_key(other)
    with pytest.raises(EventKeyError, match="encrypted with the events key"):
        open_key(events, True, other)
    wrong = crypto.load_key(other)
    with pytest.raises(EventKeyError, match="encrypted with the events key"):
        EventLog(events, key=wrong, encrypt=True)
    with pytest.raises(EventKeyError, match="encrypted with the events key"):
        crypto.verify(wrong, segment_files(events))
    assert {p.name: p.stat().st_size for p in events.iterdir()} == sizes  # nothing truncated or rewritten
    right = EventLog(events, key=crypto.load_key(data_dir / "keys" / "events.key"), encrypt=True)
    assert right.last_id == 13


def test_a_missing_key_stops_the_start_and_readers_say_why(data_dir):
    events = data_dir / "events"
    log = fresh_log(data_dir, auto_roll=False)
    log.append(rows(4))
    log.roll()
    log.append(rows(2, 4))
    log.wal.close()
    key_file = data_dir / "keys" / "events.key"
    saved = key_file.read_bytes()
    key_file.unlink()
    crypto._registered.clear()  # as in a new process
    crypto._loaded.clear()
    INDEXES._entries.clear()
    with pytest.raises(EventKeyError, match="does not exist: restore it"):
        open_key(events, True)
    with pytest.raises(EventKeyError, match="does not exist: restore it"):
        open_key(events, False)  # turning encryption off does not make encrypted files go away
    assert not key_file.exists()  # and no new key was made over the old files
    with pytest.raises(EventKeyError, match="no events key was found"):
        read_events(data_dir)
    with pytest.raises(EventKeyError, match="no events key was found"):
        read_records(wal_files(events)[-1])
    moved = data_dir / "elsewhere.key"
    moved.write_bytes(saved)
    os.chmod(moved, 0o600)
    assert read_events(data_dir, key_file=moved).num_rows == 6  # a notebook naming the key


def test_tampered_record_fails_authentication_instead_of_being_cut(data_dir):
    events = data_dir / "events"
    log = fresh_log(data_dir, auto_roll=False)
    log.append(rows(3))
    log.append(rows(3, 3))
    log.wal.close()
    path = wal_files(events)[-1]
    data = bytearray(path.read_bytes())
    # flip a ciphertext byte of the first record and fix its crc: only the authentication tag can tell
    import struct
    import zlib
    header = crypto.WAL_HEADER.size
    length, _ = struct.unpack_from(">II", data, header)
    data[header + 8 + 20] ^= 1
    struct.pack_into(">II", data, header, length, zlib.crc32(bytes(data[header + 8:header + 8 + length])))
    path.write_bytes(bytes(data))
    size = path.stat().st_size
    with pytest.raises(EventKeyError, match="fails authentication"):
        EventLog(events, key=crypto.load_key(data_dir / "keys" / "events.key"), encrypt=True)
    assert path.stat().st_size == size


def test_torn_encrypted_tail_is_cut_like_a_plaintext_one(data_dir):
    events = data_dir / "events"
    log = fresh_log(data_dir, auto_roll=False)
    log.append(rows(3))
    log.wal.close()
    with open(wal_files(events)[-1], "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage")
    again = EventLog(events, key=crypto.load_key(data_dir / "keys" / "events.key"), encrypt=True)
    assert again.last_id == 3 and again.wal.truncated_bytes == 11
    assert again.append(rows(1)) == (4, 4)


def test_turning_encryption_on_then_off_reads_every_file(data_dir):
    events = data_dir / "events"
    plain = EventLog(events, auto_roll=False)
    plain.append(rows(5, tenant="plain-era"))
    plain.roll()
    plain.append(rows(2, 5, tenant="plain-era"))  # left in a plaintext WAL file
    plain.wal.close()
    assert open_key(events, False) is None and not (events / crypto.MARKER).exists()

    on = fresh_log(data_dir, auto_roll=False)  # encryption turned on: old files stay, new ones encrypted
    assert on.last_id == 7
    on.append(rows(4, 7))
    assert len(wal_files(events)) == 2  # the plaintext file, and a new encrypted one
    on.roll()
    on.append(rows(3, 11))
    on.wal.close()
    kinds = [crypto.parquet_encrypted(p) for p in segment_files(events)]
    assert kinds == [False, True]
    assert [r["tenant"] for r in read_events(data_dir).to_pylist()][:7] == ["plain-era"] * 7
    assert read_events(data_dir).column("id").to_pylist() == list(range(1, 15))

    key = open_key(events, False)  # turned off again: the key still reads, new files are plaintext
    assert key is not None and json.loads((events / crypto.MARKER).read_text())["encrypt"] is False
    off = EventLog(events, auto_roll=False, **crypto.chosen(events))
    assert off.write_key is None and off.last_id == 14
    off.append(rows(1, 14))
    off.roll()
    assert [crypto.parquet_encrypted(p) for p in segment_files(events)] == [False, True, False]
    assert read_events(data_dir).column("id").to_pylist() == list(range(1, 16))
    off.compact(small_rows=1000, min_parts=2)  # merging all three kinds: the key opens the encrypted part
    assert len(segment_files(events)) == 1
    assert read_events(data_dir).column("id").to_pylist() == list(range(1, 16))
    con = events_duckdb(data_dir)
    assert con.sql("select count(*) from events").fetchall()[0][0] == 15


def test_mixed_directory_reads_through_duckdb(data_dir):
    events = data_dir / "events"
    plain = EventLog(events, auto_roll=False)
    plain.append(rows(5, tenant="plain-era"))
    plain.roll()
    plain.wal.close()
    on = fresh_log(data_dir, auto_roll=False)
    on.append(rows(6, 5))
    on.roll()
    on.append(rows(2, 11))
    con = events_duckdb(data_dir)
    assert con.sql("select tenant, count(*) from events group by all order by 1").fetchall() == \
        [("plain-era", 5), (TENANT, 8)]
    assert con.sql("select max(id) from events").fetchall()[0][0] == 13


def test_the_key_file_is_private_and_checked(data_dir):
    events = data_dir / "events"
    key = open_key(events, True)
    path = data_dir / "keys" / "events.key"
    assert path.stat().st_mode & 0o777 == 0o600 and (data_dir / "keys").stat().st_mode & 0o777 == 0o700
    assert len(path.read_text().strip()) == 64 and key.key_id in repr(key)
    assert path.read_text().strip() not in repr(key)
    marker = json.loads((events / crypto.MARKER).read_text())
    assert marker == {"encrypt": True, "key_file": str(path.resolve()), "key_id": key.key_id}
    assert open_key(events, True).key_id == key.key_id  # the same key again, not a new one
    assert crypto.chosen(events)["encrypt"] is True and crypto.chosen(events)["key"].key_id == key.key_id
    (events / crypto.MARKER).write_text("{}")
    with pytest.raises(EventKeyError, match="cannot be read"):
        crypto.chosen(events)
    path.write_text("not a key\n")
    with pytest.raises(EventKeyError, match="is not an events key"):
        open_key(events, True)


def test_a_custom_key_file_is_found_by_readers_in_another_process(data_dir, tmp_path_factory):
    events = data_dir / "events"
    key_file = tmp_path_factory.mktemp("vault") / "my-events.key"
    log = EventLog(events, auto_roll=False, **{"key": open_key(events, True, key_file), "encrypt": True})
    log.append(rows(3))
    log.roll()
    assert not (data_dir / "keys" / "events.key").exists()
    crypto._registered.clear()  # a gateway or notebook process: only the marker says where the key is
    crypto._loaded.clear()
    INDEXES._entries.clear()
    assert read_events(data_dir).num_rows == 3


def test_encrypted_and_plaintext_logs_read_back_the_same_rows(tmp_path):
    tables = []
    for mode in ("plain", "sealed"):
        data_dir = tmp_path / mode
        log = fresh_log(data_dir, encrypt=mode == "sealed", auto_roll=False, clock=lambda: 1_700_000_000.0)
        log.append(rows(30))
        log.roll()
        log.append(rows(30, 30, tenant="tenant-b"))
        log.roll()
        log.compact(small_rows=1000, min_parts=2)
        log.append(rows(5, 60))  # WAL only
        tables.append(read_events(data_dir))
        log.close()
        tables.append(read_events(data_dir))  # all in segments now
    assert tables[0].num_rows == 65
    assert tables[0].equals(tables[2]) and tables[1].equals(tables[3])
