"""The event log on real files: gap-free ids, durability through the WAL, torn tails, segments."""
from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from solo.events import read_events
from solo.events.log import EventLog, LogCorrupted
from solo.events.wal import wal_files


def rows(n, tenant="acme", type_="service.started"):
    return [{"tenant": tenant, "type": type_, "subject": f"s{i}", "payload": {"i": i}} for i in range(n)]


def all_ids(directory):
    return read_events(directory).column("id").to_pylist()


def test_ids_are_gap_free_across_groups_and_reopen(tmp_path):
    log = EventLog(tmp_path)
    assert log.append_many([rows(3), [], rows(2)]) == [(1, 3), (4, 3), (4, 5)]
    log.wal.close()
    again = EventLog(tmp_path)
    assert again.last_id == 5
    assert again.append(rows(1)) == (6, 6)
    assert all_ids(tmp_path) == [1, 2, 3, 4, 5, 6]


def test_roll_writes_a_sorted_segment_with_statistics_and_drops_the_wal(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(5, tenant="b") + rows(5, tenant="a"))
    segment = log.roll()
    assert segment.name == "segment-00000000000000000001-00000000000000000010.parquet"
    meta = pq.ParquetFile(segment).metadata
    tenant_col = meta.schema.names.index("tenant")
    stats = meta.row_group(0).column(tenant_col).statistics
    assert (stats.min, stats.max) == ("a", "b")
    assert pq.read_table(segment).column("tenant").to_pylist() == ["a"] * 5 + ["b"] * 5  # sorted for skipping
    assert [p.stat().st_size for p in wal_files(tmp_path)] == [0]  # a fresh, empty WAL
    assert all_ids(tmp_path) == list(range(1, 11))
    assert not list(tmp_path.glob("*.tmp"))


def test_rolls_by_itself_past_the_row_threshold(tmp_path):
    log = EventLog(tmp_path, roll_rows=100)
    for _ in range(5):
        log.append(rows(30))
    assert len(list(tmp_path.glob("segment-*.parquet"))) == 1
    assert all_ids(tmp_path) == list(range(1, 151))


def test_torn_wal_tail_is_cut_and_acknowledged_events_stay(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(4))
    wal = log.wal.path
    log.wal.close()
    with open(wal, "ab") as f:
        f.write(b"\x00\x00\x10\x00garbage that was never acknowledged")
    size = wal.stat().st_size
    reopened = EventLog(tmp_path)
    assert reopened.wal.truncated_bytes > 0 and wal.stat().st_size < size
    assert reopened.last_id == 4
    assert reopened.append(rows(1)) == (5, 5)
    assert all_ids(tmp_path) == [1, 2, 3, 4, 5]


def test_flipped_bit_in_the_last_record_is_detected(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(2))
    log.append(rows(2))
    wal = log.wal.path
    log.wal.close()
    data = bytearray(wal.read_bytes())
    data[-3] ^= 0xFF
    wal.write_bytes(bytes(data))
    assert EventLog(tmp_path).last_id == 2  # the damaged record was never fully written: dropped


def test_crash_after_segment_before_wal_cleanup_has_no_duplicates(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(3))
    wal_copy = log.wal.path.read_bytes()
    log.roll()
    (tmp_path / "wal-00000000000000000001.log").write_bytes(wal_copy)  # as if the delete never happened
    reopened = EventLog(tmp_path)
    assert reopened.last_id == 3
    assert all_ids(tmp_path) == [1, 2, 3]


def test_a_half_written_segment_is_ignored_and_removed(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(3))
    log.wal.close()
    (tmp_path / "segment-00000000000000000001-00000000000000000003.parquet.tmp").write_bytes(b"PAR1 torn")
    reopened = EventLog(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    assert reopened.last_id == 3 and all_ids(tmp_path) == [1, 2, 3]


def test_a_gap_between_segments_is_refused(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(3))
    log.roll()
    log.append(rows(3))
    second = log.roll()
    second.rename(second.with_name("segment-00000000000000000005-00000000000000000006.parquet"))
    with pytest.raises(LogCorrupted, match="expected 4"):
        EventLog(tmp_path)


def test_since_reads_segments_and_tail_in_order(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(5))
    log.roll()
    log.append(rows(5))
    assert log.since(3, limit=4).column("id").to_pylist() == [4, 5, 6, 7]
    assert log.since(10).num_rows == 0


def test_reader_filters_and_sees_uncommitted_nothing(tmp_path):
    log = EventLog(tmp_path)
    log.append(rows(2, tenant="a") + rows(3, tenant="b", type_="service.crashed"))
    assert read_events(tmp_path, tenant="b").column("id").to_pylist() == [3, 4, 5]
    assert read_events(tmp_path, type="service.crashed", max_id=3).column("id").to_pylist() == [3]
    assert read_events(tmp_path, include_wal=False).num_rows == 0
    os.sync()


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_compaction_merges_small_segments_and_keeps_the_history(tmp_path):
    log = EventLog(tmp_path)
    for _ in range(5):
        log.append(rows(10))
        log.roll()
    log.append(rows(3))  # still in the WAL
    merged = log.compact(small_rows=100, target_rows=30, min_parts=2)
    names = sorted(p.name for p in tmp_path.glob("segment-*.parquet"))
    assert names == [m.name for m in merged] == [  # no merged segment grows past target_rows
        "segment-00000000000000000001-00000000000000000030.parquet",
        "segment-00000000000000000031-00000000000000000050.parquet"]
    assert all_ids(tmp_path) == list(range(1, 54))


def test_a_compaction_interrupted_before_deleting_its_parts_recovers(tmp_path):
    log = EventLog(tmp_path)
    for _ in range(3):
        log.append(rows(5))
        log.roll()
    parts = sorted(tmp_path.glob("segment-*.parquet"))
    saved = {p: p.read_bytes() for p in parts}
    log.compact(small_rows=100, min_parts=2)
    for path, data in saved.items():  # as if the process died right after the rename
        path.write_bytes(data)
    reopened = EventLog(tmp_path)
    assert [p.name for p in sorted(tmp_path.glob("segment-*.parquet"))] == [
        "segment-00000000000000000001-00000000000000000015.parquet"]
    assert reopened.last_id == 15 and all_ids(tmp_path) == list(range(1, 16))


def test_retention_drops_whole_old_segments_from_the_front_only(tmp_path):
    clock = Clock()
    log = EventLog(tmp_path, clock=clock)
    for day in range(4):
        clock.t = 1_000_000.0 + day * 86_400
        log.append(rows(5))
        log.roll()
    clock.t = 1_000_000.0 + 4 * 86_400
    dropped = log.apply_retention(max_age_seconds=2.5 * 86_400)
    assert [p.name for p in dropped] == ["segment-00000000000000000001-00000000000000000005.parquet",
                                         "segment-00000000000000000006-00000000000000000010.parquet"]
    assert all_ids(tmp_path) == list(range(11, 21))  # gap-free inside the retained range
    log.wal.close()
    reopened = EventLog(tmp_path)  # a history that starts after 1 is valid
    assert reopened.append(rows(1)) == (21, 21)
    size = sum(p.stat().st_size for p in tmp_path.glob("segment-*.parquet"))
    assert reopened.apply_retention(max_bytes=size - 1) and all_ids(tmp_path)[0] == 16


def test_compaction_waits_for_enough_small_segments(tmp_path):
    log = EventLog(tmp_path)
    for _ in range(3):
        log.append(rows(2))
        log.roll()
    assert log.compact(small_rows=100, min_parts=4) == []
    log.append(rows(2))
    log.roll()
    assert [m.name for m in log.compact(small_rows=100, min_parts=4)] == [
        "segment-00000000000000000001-00000000000000000008.parquet"]


def test_columnar_groups_mix_with_row_groups(tmp_path):
    import pyarrow as pa
    log = EventLog(tmp_path)
    bulk = pa.table({"tenant": ["acme"] * 3, "type": ["load.tick"] * 3, "payload": ['{"i": 1}'] * 3})
    assert log.append_many([rows(2), bulk, rows(1)]) == [(1, 2), (3, 5), (6, 6)]
    table = read_events(tmp_path)
    assert table.column("id").to_pylist() == [1, 2, 3, 4, 5, 6]
    assert table.filter(pa.compute.equal(table["type"], "load.tick")).column("subject").to_pylist() == [""] * 3
    with pytest.raises(ValueError, match="tenant"):
        log.append_many([pa.table({"type": ["x"]})])
    log.wal.close()
    assert EventLog(tmp_path).last_id == 6  # the WAL replays columnar groups like any other
