"""Segments: row-group key ranges, exact pruning, appends while a segment is written, per-tenant retention."""
from __future__ import annotations

import random
from datetime import UTC, datetime

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from solo.events import read_events
from solo.events.log import EventLog
from solo.events.segments import INDEXES, KEYS_METADATA, ROW_GROUP_ROWS, segment_files
from solo.events.wal import wal_files

TENANTS = ["acme", "bolt", "cato", "dune"]
TYPES = ["service.crashed", "service.started", "service.stopped", "token.created"]


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def mixed_rows(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    return [{"tenant": rnd.choice(TENANTS), "type": rnd.choice(TYPES), "subject": f"s{rnd.randint(0, 9)}",
             "payload": {"i": i}} for i in range(n)]


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """~3 segments of several row groups each, with a time step between them."""
    directory = tmp_path_factory.mktemp("segments")
    clock = Clock()
    log = EventLog(directory, clock=clock)
    for seed in range(3):
        clock.t += 100
        log.append_many([mixed_rows(ROW_GROUP_ROWS * 2 + 123, seed)])
        log.roll()
    log.append(mixed_rows(50, 99))  # a WAL tail too
    log.wal.close()
    return directory


def test_each_row_group_records_its_first_and_last_key(big_log):
    for path in segment_files(big_log):
        index = INDEXES.get(path)
        assert index.keys is not None and len(index.keys) == pq.read_metadata(path).num_row_groups > 1
        table = pq.read_table(path)
        start = 0
        for i, (t0, y0, t1, y1) in enumerate(index.keys):
            rows = pq.ParquetFile(path).read_row_group(i)
            assert (rows["tenant"][0].as_py(), rows["type"][0].as_py()) == (t0, y0)
            assert (rows["tenant"][-1].as_py(), rows["type"][-1].as_py()) == (t1, y1)
            start += rows.num_rows
        assert start == table.num_rows
        assert KEYS_METADATA in pq.read_metadata(path).metadata


@pytest.mark.parametrize("seed", range(12))
def test_pruned_reads_return_exactly_what_a_full_scan_filter_returns(big_log, seed):
    rnd = random.Random(seed)
    everything = read_events(big_log)
    filters = {}
    if rnd.random() < 0.8:
        filters["tenant"] = rnd.choice(TENANTS + ["zzz-nobody"])
    if rnd.random() < 0.6:
        filters["type"] = rnd.choice([rnd.choice(TYPES), rnd.sample(TYPES, 2)])
    if rnd.random() < 0.4:
        filters["min_id"] = rnd.randint(1, 20_000)
    if rnd.random() < 0.4:
        filters["since"] = datetime.fromtimestamp(1_000_000 + rnd.choice([100, 200, 250, 300]), UTC)
    mask = pc.greater_equal(everything["id"], 0)
    if "tenant" in filters:
        mask = pc.and_(mask, pc.equal(everything["tenant"], filters["tenant"]))
    if "type" in filters:
        wanted = [filters["type"]] if isinstance(filters["type"], str) else filters["type"]
        mask = pc.and_(mask, pc.is_in(everything["type"], value_set=pc.cast(wanted, "string")))
    if "min_id" in filters:
        mask = pc.and_(mask, pc.greater_equal(everything["id"], filters["min_id"]))
    if "since" in filters:
        mask = pc.and_(mask, pc.greater_equal(everything["time"], filters["since"]))
    expected = everything.filter(mask).column("id").to_pylist()
    assert read_events(big_log, **filters).column("id").to_pylist() == expected, filters


def test_a_one_tenant_query_reads_only_the_row_groups_that_hold_it(big_log):
    path = segment_files(big_log)[0]
    index = INDEXES.get(path)
    chosen = index.row_groups(tenant="acme", types=["service.crashed"])
    assert 1 <= len(chosen) <= 2 < len(index.keys)  # ~600 rows of 8k: one group, two at a boundary


def test_appends_go_on_while_a_sealed_part_is_written_and_nothing_is_seen_twice(tmp_path):
    log = EventLog(tmp_path, auto_roll=False)
    log.append(mixed_rows(100, 1))
    assert log.seal()
    log.append(mixed_rows(10, 2))  # while the sealed part waits for its segment
    assert not log.seal()  # one sealed part at a time
    assert log.since(0).column("id").to_pylist() == list(range(1, 111))
    segment = log.flush()
    assert segment.name == "segment-00000000000000000001-00000000000000000100.parquet"
    assert log.since(0).column("id").to_pylist() == list(range(1, 111))
    assert log.since(95).column("id").to_pylist() == list(range(96, 111))
    assert read_events(tmp_path).column("id").to_pylist() == list(range(1, 111))


def test_a_crash_after_sealing_before_the_segment_loses_nothing(tmp_path):
    log = EventLog(tmp_path, auto_roll=False)
    log.append(mixed_rows(40, 1))
    log.seal()
    log.append(mixed_rows(5, 2))
    assert len(wal_files(tmp_path)) == 2  # the sealed part's WAL stays until its segment exists
    log.wal.close()  # "crash": the segment was never written
    again = EventLog(tmp_path)
    assert again.last_id == 45 and again.since(0).column("id").to_pylist() == list(range(1, 46))
    again.roll()
    assert read_events(tmp_path).column("id").to_pylist() == list(range(1, 46))


def per_tenant_history(tmp_path):
    clock = Clock()
    log = EventLog(tmp_path, clock=clock)
    for day in range(4):
        clock.t = 1_000_000.0 + day * 86_400
        log.append([{"tenant": t, "type": "service.started", "subject": f"d{day}"} for t in ("acme", "bolt", "cato")])
        log.roll()
    clock.t = 1_000_000.0 + 4 * 86_400
    return log


def subjects(directory, tenant):
    return read_events(directory, tenant=tenant).column("subject").to_pylist()


def test_a_tenant_override_keeps_one_tenant_longer_and_drops_another_sooner(tmp_path):
    log = per_tenant_history(tmp_path)
    touched = log.apply_retention(max_age_seconds=2.5 * 86_400, tenant_ages={"acme": None, "bolt": 1.5 * 86_400})
    assert subjects(tmp_path, "acme") == ["d0", "d1", "d2", "d3"]  # kept forever
    assert subjects(tmp_path, "bolt") == ["d3"]  # 1.5 days (the newest segment is never touched)
    assert subjects(tmp_path, "cato") == ["d2", "d3"]  # the default 2.5 days
    assert len(touched) == 3
    names = [p.name for p in segment_files(tmp_path)]  # rewritten in place: id ranges stay contiguous
    assert names == [f"segment-{a:020d}-{a + 2:020d}.parquet" for a in (1, 4, 7, 10)]
    log.wal.close()
    assert EventLog(tmp_path).append([{"tenant": "acme", "type": "x"}]) == (13, 13)


def test_retention_never_touches_events_the_registry_has_not_checkpointed(tmp_path):
    log = per_tenant_history(tmp_path)
    log.apply_retention(max_age_seconds=0.5 * 86_400, keep_after_id=5)
    assert subjects(tmp_path, "cato") == ["d1", "d2", "d3"]  # only the segment with ids 1..3 <= 5 went
    size = sum(p.stat().st_size for p in segment_files(tmp_path))
    log.apply_retention(max_bytes=1, keep_after_id=5)
    assert sum(p.stat().st_size for p in segment_files(tmp_path)) == size  # 4..6 holds id 6 > 5: kept


def test_nothing_expired_means_nothing_rewritten(tmp_path):
    log = per_tenant_history(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in segment_files(tmp_path)}
    assert log.apply_retention(max_age_seconds=30 * 86_400, tenant_ages={"bolt": 10 * 86_400}) == []
    assert {p.name: p.stat().st_mtime_ns for p in segment_files(tmp_path)} == before


def test_the_log_actor_applies_tenant_overrides_and_reads_the_checkpoint_pin(tmp_path):
    import json
    import time

    from solo.runtime.event_log_actor import EventLogActor

    checkpoint = tmp_path / "registry-checkpoint.json"
    checkpoint.write_text(json.dumps({"last_id": 4, "services": []}))
    actor = EventLogActor(str(tmp_path / "events"), tenant_retention_days={"noisy": 0.1 / 86_400},
                          retention_check_seconds=0, checkpoint_file=str(checkpoint))
    for batch in range(3):
        actor.log.append([{"tenant": t, "type": "x", "subject": str(batch)} for t in ("noisy", "calm")])
        actor.log.roll()
    time.sleep(0.3)
    actor._maintain()
    # ids 1-2 (<= the checkpoint's 4) lost noisy's event; 3-4 too; 5-6 is the newest segment: kept
    assert subjects(tmp_path / "events", "noisy") == ["2"]
    assert subjects(tmp_path / "events", "calm") == ["0", "1", "2"]
    checkpoint.write_text(json.dumps({"last_id": 2, "services": []}))
    actor.log.append([{"tenant": "noisy", "type": "x", "subject": "3"}])
    actor.log.roll()
    time.sleep(0.3)
    actor._maintain()
    assert subjects(tmp_path / "events", "noisy") == ["2", "3"]  # 5-6 is after the checkpoint now: kept


def test_rows_turned_into_columns_by_the_producer_store_the_same_events(tmp_path):
    from solo.events.log import to_columns

    rows = [{"tenant": "acme", "type": "service.started", "subject": f"s{i}", "principal": "user:1",
             "correlation_id": f"r{i}", "causation_id": 7 if i % 2 else None, "payload": {"i": i, "b": [1, "x"]},
             "time": 1_700_000_000 + i} for i in range(70)]
    as_dicts, as_columns = EventLog(tmp_path / "d"), EventLog(tmp_path / "c")
    as_dicts.append(rows)
    as_columns.append_many([to_columns(rows)])
    assert as_dicts.tail_table().equals(as_columns.tail_table())
    with pytest.raises(KeyError):
        to_columns([{"type": "x"}])  # the handle checks groups first and answers INVALID_ARGUMENT


def test_reads_racing_rolls_and_merges_see_every_event_exactly_once(tmp_path):
    import threading

    log = EventLog(tmp_path, auto_roll=False)
    stop = threading.Event()

    def churn():  # append, seal, flush and merge as fast as possible while the reader reads
        while not stop.is_set():
            log.append(mixed_rows(7, 0))
            log.seal()
            log.flush()
            log.compact(small_rows=1000, min_parts=3)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(200):
            ids = read_events(tmp_path).column("id").to_pylist()
            assert ids == list(range(1, len(ids) + 1))
    finally:
        stop.set()
        worker.join()
