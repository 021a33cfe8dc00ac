"""solo.events log and reader on real Parquet files."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from solo.events import EVENT_SCHEMA, SCHEMA_VERSION, read_events
from solo.events.log import EventLog


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_roll_writes_one_segment_named_by_its_id_range(tmp_path):
    log = EventLog(tmp_path / "events", clock=Clock())
    assert log.append_many([
        [{"tenant": "acme", "type": "service.deploying", "subject": "echo", "payload": {"version": "1"}}],
        [{"tenant": "acme", "type": "service.started", "subject": "echo", "payload": {"pid": 42},
          "principal": "tenant:acme", "correlation_id": "req-1", "causation_id": 1},
         {"tenant": "beta", "type": "service.started", "subject": "kv"}]]) == [(1, 1), (2, 3)]
    path = log.roll()
    assert path.name == "segment-00000000000000000001-00000000000000000003.parquet"
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        path.name, "wal-00000000000000000004.log"]  # no .tmp left behind, a fresh WAL
    assert pq.read_table(path).schema.equals(EVENT_SCHEMA, check_metadata=False)
    rows = read_events(tmp_path).to_pylist()
    assert rows[1] == {"id": 2, "time": at(1_700_000_000.0), "tenant": "acme", "type": "service.started",
                       "subject": "echo", "principal": "tenant:acme", "causation_id": 1, "correlation_id": "req-1",
                       "payload": '{"pid": 42}', "schema_version": SCHEMA_VERSION}
    assert json.loads(rows[2]["payload"]) == {} and rows[2]["causation_id"] is None


def test_roll_with_nothing_committed_writes_nothing(tmp_path):
    log = EventLog(tmp_path)
    assert log.roll() is None and not list(tmp_path.glob("segment-*"))


def test_unrelated_files_are_ignored(tmp_path):
    log = EventLog(tmp_path / "events")
    log.append([{"tenant": "acme", "type": "t", "subject": "s"}])
    log.roll()
    (tmp_path / "events" / "segment-notes.parquet").write_text("not parquet")
    assert EventLog(tmp_path / "events").last_id == 1
    assert read_events(tmp_path).num_rows == 1


@pytest.fixture
def history(tmp_path):
    clock = Clock(1000.0)
    log = EventLog(tmp_path / "events", clock=clock)
    for t, tenant, type_, subject in [(1000, "acme", "service.deploying", "echo"),
                                      (2000, "acme", "service.started", "echo"),
                                      (3000, "beta", "service.started", "echo"),
                                      (4000, "acme", "service.crashed", "kv")]:
        clock.t = t
        log.append([{"tenant": tenant, "type": type_, "subject": subject}])
        if t == 2000:
            log.roll()  # spread the history over a segment and the WAL
    return tmp_path


def test_read_events_accepts_the_data_dir_or_its_events_folder(history):
    assert read_events(history)["id"].to_pylist() == [1, 2, 3, 4]
    assert read_events(history / "events")["id"].to_pylist() == [1, 2, 3, 4]


@pytest.mark.parametrize("filters,ids", [
    ({"tenant": "acme"}, [1, 2, 4]),
    ({"type": "service.started"}, [2, 3]),
    ({"subject": "echo"}, [1, 2, 3]),
    ({"tenant": "acme", "subject": "echo"}, [1, 2]),
    ({"min_id": 2, "max_id": 3}, [2, 3]),
    ({"since": at(2000)}, [2, 3, 4]),  # since is inclusive
    ({"until": at(3000)}, [1, 2]),  # until is exclusive
    ({"since": at(1500), "until": at(3500), "tenant": "acme"}, [2]),
    ({"tenant": "nobody"}, []),
])
def test_read_events_filters(history, filters, ids):
    table = read_events(history, **filters)
    assert table["id"].to_pylist() == ids
    assert table.schema.equals(EVENT_SCHEMA, check_metadata=False)


def test_read_events_orders_by_id(tmp_path):
    rows = [{"id": i, "time": at(i), "tenant": "acme", "type": "t", "subject": "s", "principal": None,
             "causation_id": None, "correlation_id": None, "payload": "{}", "schema_version": 1} for i in (3, 1, 2)]
    (tmp_path / "events").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA),
                   tmp_path / "events" / "segment-00000000000000000001-00000000000000000003.parquet")
    assert read_events(tmp_path)["id"].to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("make", [True, False])
def test_empty_or_missing_directory_gives_an_empty_table_with_the_schema(tmp_path, make):
    if make:
        (tmp_path / "events").mkdir()
    table = read_events(tmp_path)
    assert table.num_rows == 0 and table.schema == EVENT_SCHEMA
