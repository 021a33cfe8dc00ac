"""The log store's bounds and rotation, on real files: per service, per tenant, in all; reading with after/since/
tail; what a restart finds; removal."""
from __future__ import annotations

import os
import stat

import pytest

from solo.registry.logstore import LogStore, decode, encode, number_of


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store_at(tmp_path, **bounds) -> LogStore:
    options = {"service_bytes": 64 << 10, "tenant_bytes": 1 << 20, "total_bytes": 4 << 20, "segments": 4}
    options.update(bounds)
    return LogStore(tmp_path / "logs", min_free=lambda total: 0, **options)


def lines(count: int, start: float = 1_000_000.0, size: int = 100, stream: str = "stdout"):
    return [(start + i, stream, "1", f"{i:06d} " + "x" * size) for i in range(count)]


def disk_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.jsonl"))


def test_lines_come_back_in_order_with_their_tags_and_files_are_private(tmp_path):
    store = store_at(tmp_path)
    store.append("acme", "kv", [(10.0, "stdout", "1", "hello"), (11.0, "stderr", "1", "oops"),
                                (12.0, "solo", "2", "swapped to version 2")])
    page = store.read("acme", "kv")
    assert [(r["n"], r["time"], r["stream"], r["version"], r["text"]) for r in page.lines] == [
        (1, 10.0, "stdout", "1", "hello"), (2, 11.0, "stderr", "1", "oops"), (3, 12.0, "solo", "2", "swapped to version 2")]
    assert page.last == 3 and page.skipped == 0
    where = tmp_path / "logs" / "acme" / "kv"
    assert stat.S_IMODE(where.stat().st_mode) == 0o700 and stat.S_IMODE(where.parent.stat().st_mode) == 0o700
    for segment in where.iterdir():
        assert stat.S_IMODE(segment.stat().st_mode) == 0o600


def test_a_service_rotates_through_segments_and_never_holds_more_than_its_bound(tmp_path):
    store = store_at(tmp_path, service_bytes=64 << 10)
    for batch in range(50):  # ~500 KiB written, 64 KiB kept
        store.append("acme", "flood", lines(40, start=batch * 40))
        assert disk_bytes(tmp_path / "logs" / "acme" / "flood") <= 64 << 10
    segments = sorted((tmp_path / "logs" / "acme" / "flood").iterdir())
    assert 2 <= len(segments) <= 5
    page = store.read("acme", "flood", max_lines=10_000, max_bytes=1 << 30)
    numbers = [r["n"] for r in page.lines]
    assert numbers == list(range(numbers[0], 2001)) and numbers[0] > 1  # the newest kept, oldest rotated away
    resumed = store.read("acme", "flood", after=5)  # a reader that was at line 5 learns how many it missed
    assert resumed.skipped == numbers[0] - 6 and resumed.lines[0]["n"] == numbers[0]


def test_a_tenant_with_many_services_is_held_to_its_bound_and_other_tenants_keep_theirs(tmp_path):
    store = store_at(tmp_path, service_bytes=64 << 10, tenant_bytes=256 << 10, total_bytes=8 << 20)
    store.append("bystander", "quiet", lines(5))
    for round_ in range(10):
        for index in range(20):
            store.append("mallory", f"svc-{index}", lines(30, start=round_ * 100.0 + index))
        assert disk_bytes(tmp_path / "logs" / "mallory") <= 256 << 10
    assert store.tenant_sizes["mallory"] <= 256 << 10
    assert len(store.read("bystander", "quiet").lines) == 5  # untouched


def test_past_the_total_bound_the_tenant_holding_the_most_loses_its_oldest_lines(tmp_path):
    store = store_at(tmp_path, service_bytes=256 << 10, tenant_bytes=1 << 20, total_bytes=1 << 20)
    store.append("small", "one", lines(10))
    for index in range(8):
        store.append("big", f"s-{index}", lines(1500, start=2_000_000.0 + index * 10_000))
    assert disk_bytes(tmp_path / "logs") <= 1 << 20
    assert len(store.read("small", "one").lines) == 10


def test_no_write_when_the_disk_is_nearly_full_and_the_loss_is_counted(tmp_path):
    store = LogStore(tmp_path / "logs", 64 << 10, 1 << 20, 4 << 20, min_free=lambda total: total + 1)
    assert store.append("acme", "kv", lines(3)) == 0
    assert not (tmp_path / "logs" / "acme").exists()
    assert store.take_dropped("acme", "kv") > 0 and store.take_dropped("acme", "kv") == 0


def test_tail_and_since(tmp_path):
    store = store_at(tmp_path, service_bytes=16 << 10, segments=4)  # small segments: the tail spans several
    store.append("acme", "kv", lines(100, start=1000.0, size=200))
    newest = store.read("acme", "kv").lines[-1]["n"]
    tail = store.read("acme", "kv", tail=30)
    assert [r["n"] for r in tail.lines] == list(range(newest - 29, newest + 1))
    since = store.read("acme", "kv", since=1095.0)
    assert [r["time"] for r in since.lines] == [1095.0, 1096.0, 1097.0, 1098.0, 1099.0]
    both = store.read("acme", "kv", since=1090.0, tail=3)
    assert [r["time"] for r in both.lines] == [1097.0, 1098.0, 1099.0]
    assert store.read("acme", "kv", since=5000.0).lines == []
    assert store.read("acme", "kv", tail=3, since=5000.0).lines == []


def test_pages_resume_after_the_last_line_read(tmp_path):
    store = store_at(tmp_path)
    store.append("acme", "kv", lines(25))
    seen, after = [], -1
    while True:
        page = store.read("acme", "kv", after=after, max_lines=10)
        seen += [r["n"] for r in page.lines]
        if not page.lines:
            break
        after = page.last
    assert seen == list(range(1, 26))
    store.append("acme", "kv", lines(2))
    assert [r["n"] for r in store.read("acme", "kv", after=after).lines] == [26, 27]


def test_a_new_store_finds_what_an_earlier_run_kept_and_continues_its_numbers(tmp_path):
    first = store_at(tmp_path)
    first.append("acme", "kv", lines(40))
    with open(sorted((tmp_path / "logs" / "acme" / "kv").iterdir())[-1], "ab") as f:
        f.write(b'{"n": 41, "t": 1.0, "s": "std')  # a write a crash cut short
    again = store_at(tmp_path)
    assert again.last("acme", "kv") == 40
    again.append("acme", "kv", [(2.0, "solo", "1", "restarted")])
    rows = again.read("acme", "kv", max_lines=1000).lines
    assert [r["n"] for r in rows] == list(range(1, 42)) and rows[-1]["text"] == "restarted"
    assert again.tenant_sizes["acme"] == disk_bytes(tmp_path / "logs")


def test_forget_deletes_the_service_and_its_empty_tenant_folder(tmp_path):
    store = store_at(tmp_path)
    store.append("acme", "kv", lines(3))
    store.append("acme", "other", lines(3))
    store.forget("acme", "kv")
    assert not (tmp_path / "logs" / "acme" / "kv").exists() and not store.has("acme", "kv")
    assert store.read("acme", "kv").lines == []
    store.forget("acme", "other")
    assert not (tmp_path / "logs" / "acme").exists() and "acme" not in store.tenant_sizes


@pytest.mark.parametrize("tenant,name", [("..", "kv"), ("acme", "../etc"), ("acme", "a/b"), ("", "kv")])
def test_names_that_are_not_names_never_become_paths(tmp_path, tenant, name):
    store = store_at(tmp_path)
    with pytest.raises(ValueError):
        store.append(tenant, name, lines(1))
    with pytest.raises(ValueError):
        store.read(tenant, name)
    assert not os.path.exists(tmp_path / "etc")


def test_decode_refuses_what_is_not_a_line():
    assert decode(b"not json") is None and decode(b'{"n": 1}') is None
    assert number_of(encode(42, 1.0, "stdout", "1", "x").rstrip()) == 42
    assert number_of(b"garbage") == -1 and number_of(b'{"n":x1,') == -1
