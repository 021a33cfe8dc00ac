#!/usr/bin/env python
"""The event log: durable append throughput and ack latency, "one tenant and one type" queries, registry rebuild.

    python bench/events.py          # ~3 min, hard limit 420 s; writes the "events" section of bench/RESULTS.md

  appends  Solo's EventLogActor (the real Ray actor, local Ray) driven by producer coroutines in this process:
           8 producers x 1000-event batches (as row dicts, and as Arrow record batches), 8 producers x 1 event,
           1 producer x 1 event (ack latency);
           the EventLog class in-process (no Ray) as a diagnostic; anchors in the same temp dir type:
           one os.write+os.fsync per event, SQLite (WAL, synchronous=FULL, 1000 rows/transaction),
           a pyarrow ParquetWriter writing the same rows
  query    a 1M-event log written by EventLog, rolled every 100k and compacted as the actor does (10 tenants x
           20 types, ~100-byte JSON payloads), then
           "tenant T and type Y" (count, and fetch all columns ordered by id) with solo.events.read_events,
           DuckDB read_parquet over the segments, pyarrow.dataset with a filter, SQLite with an index on
           (tenant, type) holding the same rows; then 10M events (DuckDB and Solo) if the time budget allows
  rebuild  the registry's rebuild (load_checkpoint, read_events(min_id=), select, to_pylist, fold,
           write_checkpoint) over 100k and 1M service events, without and with a checkpoint at 90%

Everything runs in temp dirs under /tmp that are removed at the end; Ray is a private local instance.
"""
from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before anything imports ray

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from solo.events import EVENT_SCHEMA, read_events  # noqa: E402
from solo.events.log import EventLog  # noqa: E402
from solo.events.segments import ROW_GROUP_ROWS, segment_files, write_segment  # noqa: E402
from solo.events.wal import encode_batch  # noqa: E402
from solo.registry.rebuild import CHECKPOINT_FILE, fold, load_checkpoint, write_checkpoint  # noqa: E402

HARD_LIMIT = 420
COMPACT_BELOW_ROWS = 500_000  # the [events] compact_below_rows default: what the actor merges after each roll
TARGET_APPEND_EPS = 200_000
TARGET_ACK_OVER_FSYNC_MS = 2.0
TARGET_QUERY_MS = 10.0
TARGET_QUERY_BIG_MS = 50.0

TENANTS = [f"tenant-{i:02d}" for i in range(10)]
TYPES = ["service.deploying", "service.started", "service.crashed", "service.restarting", "service.restarted",
         "service.stopped", "service.replaced", "service.failed", "call.completed", "call.failed",
         "token.created", "token.revoked", "tenant.created", "tenant.quota_changed", "secret.set",
         "secret.deleted", "route.published", "host.started", "host.stopped", "audit.login"]
QUERY_TENANT, QUERY_TYPE = "tenant-03", "service.crashed"


def pct(values: list[float], q: float) -> float:
    return C.percentile(sorted(values), q)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}" if seconds == seconds else "-"


def num(value: float) -> str:
    return f"{value:,.0f}"


def log(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)


# -- rows ------------------------------------------------------------------------------------------

def producer_rows(n: int, seed: int) -> list[dict]:
    """n event rows as a producer hands them to the actor: dicts with a dict payload (~100 bytes of JSON)."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        payload = {"version": str(rnd.randint(1, 40)), "host": f"solo-host-{rnd.getrandbits(32):08x}",
                   "pid": rnd.randint(1000, 60000), "latency_ms": round(rnd.random() * 50, 3),
                   "request_id": f"{rnd.getrandbits(48):012x}"}
        rows.append({"tenant": rnd.choice(TENANTS), "type": rnd.choice(TYPES),
                     "subject": f"svc-{rnd.randint(0, 99):03d}",
                     "payload": payload, "principal": f"user:{rnd.randint(0, 49)}",
                     "correlation_id": f"req-{seed:02d}-{i:06d}-{rnd.getrandbits(32):08x}"})
    return rows


def _pool(names: list[str], idx: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32()), pa.array(names)).cast(pa.string())


def _s(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def gen_columns(first_id: int, n: int, rng: np.random.Generator) -> dict[str, pa.Array]:
    """n query-benchmark events, columnar: 10 tenants x 20 types uniform, 100 subjects, ~100-byte JSON payloads."""
    hexes = [f"{i:04x}" for i in range(4096)]
    pid, lat = rng.integers(1000, 60000, n), rng.integers(0, 50_000, n)
    payload = pc.binary_join_element_wise(
        '{"host": "solo-host-', _pool(hexes, rng.integers(0, 4096, n)), _pool(hexes, rng.integers(0, 4096, n)),
        '", "latency_ms": ', _s(lat // 1000), ".", _s(lat % 1000), ', "pid": ', _s(pid),
        ', "request_id": "', _s(rng.integers(10**11, 10**12, n)), '", "version": "', _s(rng.integers(1, 40, n)),
        '"}', "")
    return {"id": pa.array(np.arange(first_id, first_id + n, dtype=np.uint64)),
            "tenant": _pool(TENANTS, rng.integers(0, len(TENANTS), n)),
            "type": _pool(TYPES, rng.integers(0, len(TYPES), n)),
            "subject": _pool([f"svc-{i:03d}" for i in range(100)], rng.integers(0, 100, n)),
            "principal": _pool([f"user:{i}" for i in range(50)], rng.integers(0, 50, n)),
            "correlation_id": pc.binary_join_element_wise("req-", _s(rng.integers(10**11, 10**12, n)), ""),
            "payload": payload}


def segment_table(cols: dict[str, pa.Array], time_us: int) -> pa.Table:
    n = len(cols["id"])
    time_col = pa.array(np.full(n, time_us, dtype=np.int64)).cast(EVENT_SCHEMA.field("time").type)
    arrays = {"id": cols["id"], "time": time_col,
              "tenant": cols["tenant"], "type": cols["type"], "subject": cols["subject"],
              "principal": cols["principal"], "causation_id": pa.nulls(n, pa.uint64()),
              "correlation_id": cols["correlation_id"], "payload": cols["payload"],
              "schema_version": pa.array(np.ones(n, dtype=np.uint16))}
    return pa.Table.from_arrays([arrays[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def service_events(n: int, seed: int = 7) -> list[dict]:
    """n service events over 1000 services (10 tenants x 100) with coherent lifecycles and the registry's payloads."""
    rnd = random.Random(seed)
    services = [(t, f"svc-{i:03d}") for t in TENANTS for i in range(100)]
    state = {key: None for key in services}  # None (never deployed), RUNNING, STOPPED
    gen = {key: 0 for key in services}
    restarts = {key: 0 for key in services}
    rows: list[dict] = []

    def emit(key, kind, **payload):
        rows.append({"tenant": key[0], "type": kind, "subject": key[1], "payload": payload,
                     "principal": f"user:{rnd.randint(0, 49)}", "correlation_id": f"{rnd.getrandbits(64):016x}"})

    def started(key, kind):
        emit(key, kind, version=str(gen[key]), node_id=f"{rnd.getrandbits(112):028x}", pid=rnd.randint(1000, 60000),
             restarts=restarts[key], host=f"solo-host-{key[0]}-{key[1]}-{rnd.getrandbits(24):06x}")

    while len(rows) < n:
        key = rnd.choice(services)
        if state[key] != "RUNNING":
            gen[key] += 1
            restarts[key] = 0
            emit(key, "service.deploying", version=str(gen[key]), filename=f"{key[1]}.py",
                 resources={"num_cpus": 0.1, "memory_mb": 256}, env_keys=["LOG_LEVEL"], labels={},
                 spec=f"{rnd.getrandbits(256):064x}", generation=gen[key])
            started(key, "service.started")
            state[key] = "RUNNING"
        elif rnd.random() < 0.85:
            emit(key, "service.crashed", version=str(gen[key]), pid=rnd.randint(1000, 60000),
                 reason="the host process exited (exit code 1)", restarts=restarts[key])
            restarts[key] += 1
            emit(key, "service.restarting", version=str(gen[key]), attempt=restarts[key])
            started(key, "service.restarted")
        else:
            emit(key, "service.stopped", version=str(gen[key]))
            state[key] = "STOPPED"
    return rows[:n]


# -- 1. appends ------------------------------------------------------------------------------------

def timed_loop(step, duration: float, max_iter: int) -> tuple[int, float, list[float]]:
    """Call step() until `duration` s passed (or max_iter calls): (calls, wall s, per-call latencies)."""
    lat, start = [], time.perf_counter()
    end = start + duration
    while len(lat) < max_iter:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        step()
        lat.append(time.perf_counter() - t0)
    return len(lat), time.perf_counter() - start, lat


def anchor_fsync(work: Path, duration: float) -> dict:
    path = work / "fsync-anchor.log"
    record = b'{"tenant": "tenant-03", "type": "service.crashed", "subject": "svc-042", "payload": ' \
             b'{"pid": 4242, "reason": "exit 1"}, "principal": "user:7", "correlation_id": "req-1"}'.ljust(200)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        calls, wall, lat = timed_loop(lambda: (os.write(fd, record), os.fsync(fd)), duration, 500_000)
    finally:
        os.close(fd)
        path.unlink()
    return {"eps": calls / wall, "p50": pct(lat, 50), "p99": pct(lat, 99), "n": calls, "bytes": len(record)}


def anchor_sqlite(work: Path, batches: list[list[dict]], duration: float) -> dict:
    path = work / "anchor.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("pragma journal_mode=wal")
    con.execute("pragma synchronous=full")
    con.execute("create table events (id integer primary key, time integer, tenant text, type text, subject text,"
                " principal text, correlation_id text, payload text)")
    sql = "insert into events (time, tenant, type, subject, principal, correlation_id, payload) values (?,?,?,?,?,?,?)"
    i = 0

    def step():
        nonlocal i
        rows, i = batches[i % len(batches)], i + 1
        now = int(time.time() * 1e6)
        con.execute("begin")
        con.executemany(sql, [(now, r["tenant"], r["type"], r["subject"], r["principal"], r["correlation_id"],
                               json.dumps(r["payload"], sort_keys=True)) for r in rows])
        con.execute("commit")

    try:
        calls, wall, lat = timed_loop(step, duration, 10_000)
    finally:
        con.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return {"eps": calls * len(batches[0]) / wall, "p50": pct(lat, 50), "p99": pct(lat, 99)}


def anchor_parquet(work: Path, batches: list[list[dict]], duration: float) -> dict:
    path = work / "anchor.parquet"
    schema = pa.schema([f for f in EVENT_SCHEMA if f.name in ("time", "tenant", "type", "subject", "principal",
                                                              "correlation_id", "payload")])
    writer = pq.ParquetWriter(path, schema)
    i = 0

    def step():
        nonlocal i
        rows, i = batches[i % len(batches)], i + 1
        now = int(time.time() * 1e6)
        writer.write_batch(pa.RecordBatch.from_pylist(
            [{"time": now, "tenant": r["tenant"], "type": r["type"], "subject": r["subject"],
              "principal": r["principal"], "correlation_id": r["correlation_id"],
              "payload": json.dumps(r["payload"], sort_keys=True)} for r in rows], schema=schema))

    try:
        calls, wall, lat = timed_loop(step, duration, 10_000)
        t0 = time.perf_counter()
        writer.close()
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        wall += time.perf_counter() - t0
    finally:
        path.unlink(missing_ok=True)
    return {"eps": calls * len(batches[0]) / wall, "p50": pct(lat, 50), "p99": pct(lat, 99)}


def eventlog_inprocess(work: Path, batches: list[list[dict]], duration: float) -> dict:
    """The EventLog class without Ray: append_many of 8 x 1000 rows (one fsync), then single appends."""
    directory = work / "inprocess"
    elog = EventLog(directory)
    try:
        calls, wall, lat = timed_loop(lambda: elog.append_many(batches), duration, 10_000)
        many = {"eps": calls * sum(map(len, batches)) / wall, "p50": pct(lat, 50), "p99": pct(lat, 99)}
        one = batches[0][:1]
        calls1, wall1, lat1 = timed_loop(lambda: elog.append(one), 1.0, 20_000)
        single = {"eps": calls1 / wall1, "p50": pct(lat1, 50), "p99": pct(lat1, 99)}
        # where the time of one 1000-row group goes (no fsync in these two)
        reps = 20
        t0 = time.perf_counter()
        built = [elog._batch(batches[0], 1) for _ in range(reps)]
        build = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for batch in built:
            encode_batch(batch)
        encode = (time.perf_counter() - t0) / reps
        elog.roll()
        while elog._tail_rows + 8000 < elog.roll_rows:  # fill the tail to just under a roll, then time the roll
            elog.append_many(batches)
        t0 = time.perf_counter()
        elog.roll()
        roll = time.perf_counter() - t0
        roll_rows = elog.roll_rows
    finally:
        elog.close()
        shutil.rmtree(directory, ignore_errors=True)
    return {"many": many, "single": single, "build_1000": build, "encode_1000": encode, "roll": roll,
            "roll_rows": roll_rows}


async def drive_actor(append, batches: list, warmup: float, duration: float) -> dict:
    """len(batches) producer coroutines, each awaiting append(its rows) in a loop. Calls completing
    inside the measured window count (events and ack latency); every acknowledged range is kept for checks."""
    start = time.perf_counter()
    window_start, window_end = start + warmup, start + warmup + duration
    latencies: list[float] = []
    ranges: list[tuple[int, int]] = []
    counted = [0]
    meter = C.CpuMeter()

    async def producer(rows):
        while time.perf_counter() < window_end:
            t0 = time.perf_counter()
            first, last = await append(rows)
            t1 = time.perf_counter()
            ranges.append((first, last))
            if window_start <= t1 <= window_end:
                latencies.append(t1 - t0)
                counted[0] += last - first + 1

    async def metering():
        await asyncio.sleep(warmup)
        meter.start()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        cpu.update(meter.stop())

    cpu: dict = {}
    await asyncio.gather(metering(), *[producer(rows) for rows in batches])
    ranges.sort()
    gap_free = all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:])) and (not ranges or ranges[0][0] == 1)
    return {"eps": counted[0] / duration, "acks": len(latencies) / duration, "p50": pct(latencies, 50),
            "p99": pct(latencies, 99), "acked_total": sum(b - a + 1 for a, b in ranges),
            "last_acked": ranges[-1][1] if ranges else 0, "gap_free": gap_free, "cpu": cpu}


class NoopLog:
    """The Ray floor: an async actor with the event-log actor's options whose append only hands out ids."""

    def __init__(self):
        self.last = 0

    async def append(self, rows: list[dict]) -> tuple[int, int]:
        first, self.last = self.last + 1, self.last + len(rows)
        return first, self.last


def bench_actor(work: Path, args, started: float) -> dict:
    import functools
    import secrets

    import ray

    from solo.runtime.event_log_actor import EventLogHandle, get_or_create_event_log

    points = {"a": (8, 1000), "a-dicts": (8, 1000), "a-arrow": (8, 1000), "b": (8, 1), "c": (1, 1)}
    results = {}
    with C.local_ray(num_cpus=2):
        for key, (producers, size) in (("floor-a", (8, 1000)), ("floor-arrow", (8, 1000)), ("floor-b", (8, 1)),
                                       ("floor-c", (1, 1))):
            actor = ray.remote(NoopLog).options(num_cpus=0, max_concurrency=10_000).remote()
            batches = [producer_rows(size, seed=key_seed) for key_seed in range(producers)]
            if key == "floor-arrow":  # the same rows as one Arrow RecordBatch per call (payload as JSON text)
                batches = [pa.RecordBatch.from_pylist([{**r, "payload": json.dumps(r["payload"], sort_keys=True)}
                                                       for r in rows]) for rows in batches]
            log(started, f"appends ({key}): no-op Ray actor, {producers} producer(s) x {size}-event batches")
            try:
                ray.get(actor.append.remote([]))
                point = asyncio.run(drive_actor(actor.append.remote, batches, args.warmup, min(args.duration, 3.0)))
            finally:
                ray.kill(actor)
            point.update(producers=producers, size=size)
            results[key] = point
            log(started, f"  {num(point['eps'])} events/s, {num(point['acks'])} acks/s, p50 {ms(point['p50'])} ms")
        for key, (producers, size) in points.items():
            directory = work / f"actor-{key}" / "events"
            # exactly how the supervisor creates it (named, detached, num_cpus=0, max_concurrency=10000), with
            # the default [events] config (roll every 5 s or at 100k events, compaction of small segments)
            namespace = f"bench-events-{key}"
            control = secrets.token_hex(32)  # every call to the actor carries Solo's control secret
            actor = get_or_create_event_log(directory, namespace, control_secret=control)
            batches = [producer_rows(size, seed=key_seed) for key_seed in range(producers)]
            if key == "a-arrow":  # a bulk producer hands over columns: one RecordBatch, payload as JSON text
                batches = [pa.RecordBatch.from_pylist([{**r, "payload": json.dumps(r["payload"], sort_keys=True)}
                                                       for r in rows]) for rows in batches]
            log(started, f"appends ({key}): EventLogActor, {producers} producer(s) x {size}-event batches, "
                         f"{args.warmup:g} s warm-up + {args.duration:g} s")
            try:
                # (a), (b), (c): through EventLogHandle, the producers' API (a 1000-row group becomes Arrow columns
                # in the producer); a-dicts / a-arrow: the same rows sent straight to the actor as dicts / as columns
                append = (functools.partial(actor.append.remote, control) if key in ("a-dicts", "a-arrow")
                          else EventLogHandle(namespace, control).append)
                point = asyncio.run(drive_actor(append, batches, args.warmup, args.duration))
                point["actor_last_id"] = ray.get(actor.last_id.remote(control))
                ray.get(actor.close.remote(control))
            finally:
                ray.kill(actor)
            on_disk = sum(pq.read_metadata(f).num_rows for f in segment_files(directory))
            point["on_disk"] = on_disk
            point["segments"] = len(segment_files(directory))
            point.update(producers=producers, size=size)
            results[key] = point
            log(started, f"  {num(point['eps'])} events/s, {num(point['acks'])} acks/s, p50 {ms(point['p50'])} ms, "
                         f"p99 {ms(point['p99'])} ms; acked {num(point['acked_total'])}, on disk {num(on_disk)}, "
                         f"gap-free {point['gap_free']}")
            shutil.rmtree(directory.parent, ignore_errors=True)
    return results


# -- 2. queries ------------------------------------------------------------------------------------

def build_1m(directory: Path, n: int, rng: np.random.Generator) -> dict:
    """Write n events through EventLog.append_many (100 groups of 1000 rows per call, one fsync each) with Solo's
    default roll_rows=100k, so the segments are exactly what Solo writes (sorted by tenant, type, id; its row
    groups)."""
    elog = EventLog(directory, roll_rows=100_000, auto_roll=False)
    t_rows = t_log = t_maint = 0.0
    try:
        for first in range(1, n + 1, 100_000):
            t0 = time.perf_counter()
            cols = gen_columns(first, min(100_000, n - first + 1), rng)
            rows = pa.table({k: v for k, v in cols.items() if k != "id"}).to_pylist()  # payload: a JSON string
            t1 = time.perf_counter()
            elog.append_many([rows[i:i + 1000] for i in range(0, len(rows), 1000)])
            t2 = time.perf_counter()
            elog.roll()  # what the actor's maintenance does once 100k are committed: roll, then compact
            elog.compact(small_rows=COMPACT_BELOW_ROWS)
            t_maint += time.perf_counter() - t2
            t_log += t2 - t1
            t_rows += t1 - t0
    finally:
        elog.close()
    files = segment_files(directory)
    return {"append_s": t_log, "maint_s": t_maint, "gen_s": t_rows, "segments": len(files),
            "layout": layout(files), "bytes": sum(f.stat().st_size for f in files)}


def layout(files: list[Path]) -> str:
    """Segment sizes, e.g. '1 x 800k + 2 x 100k rows'."""
    counts: dict[int, int] = {}
    for f in files:
        rows = pq.read_metadata(f).num_rows
        counts[rows] = counts.get(rows, 0) + 1
    return " + ".join(f"{c} x {r / 1000:,.0f}k" for r, c in sorted(counts.items(), reverse=True)) + " rows"


def build_big(directory: Path, n: int, rng: np.random.Generator, deadline: float) -> dict | None:
    """n events written as 100k-row segments by Solo's segment writer (what a roll writes), each followed by the
    compaction the actor runs after a roll; generated columnar (the per-row append path would take minutes)."""
    t0 = time.perf_counter()
    now = int(time.time() * 1e6)
    elog = EventLog(directory)
    try:
        for first in range(1, n + 1, 100_000):
            if time.monotonic() > deadline:
                return None
            table = segment_table(gen_columns(first, min(100_000, n - first + 1), rng), now)
            write_segment(directory, table, first, first + table.num_rows - 1)
            elog.compact(small_rows=COMPACT_BELOW_ROWS)
    finally:
        elog.wal.close()
    files = segment_files(directory)
    return {"build_s": time.perf_counter() - t0, "segments": len(files), "layout": layout(files),
            "bytes": sum(f.stat().st_size for f in files)}


def load_sqlite(path: Path, table: pa.Table) -> float:
    t0 = time.perf_counter()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("pragma journal_mode=wal")
    con.execute("pragma synchronous=off")  # bulk load; the query side is what is measured
    con.execute("create table events (id integer primary key, time integer, tenant text not null, type text not null,"
                " subject text, principal text, causation_id integer, correlation_id text, payload text,"
                " schema_version integer)")
    cols = [table.column(name) for name in EVENT_SCHEMA.names]
    cols[1] = cols[1].cast(pa.int64())
    con.execute("begin")
    for start in range(0, table.num_rows, 100_000):
        chunk = [c.slice(start, 100_000).to_pylist() for c in cols]
        con.executemany("insert into events values (?,?,?,?,?,?,?,?,?,?)", zip(*chunk))
    con.execute("commit")
    con.execute("create index events_tenant_type on events (tenant, type)")
    con.execute("analyze")
    con.close()
    return time.perf_counter() - t0


def time_query(fn, repeats: int, deadline: float | None = None) -> dict:
    fn()  # warm-up (page cache, DuckDB/Arrow first-use costs)
    samples, rows = [], None
    for _ in range(repeats):
        if deadline is not None and samples and time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        rows = fn()
        samples.append(time.perf_counter() - t0)
    return {"p50": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples),
            "rows": rows}


def query_engines(directory: Path, sqlite_path: Path | None, repeats: int, deadline: float | None = None,
                  engines=("solo", "duckdb", "dataset", "sqlite")) -> list[dict]:
    import duckdb

    t, y = QUERY_TENANT, QUERY_TYPE
    glob = str(directory / "segment-*.parquet")
    out = []
    if "solo" in engines:
        r = time_query(lambda: read_events(directory, tenant=t, type=y).num_rows, repeats, deadline)
        out.append({"engine": "solo.events.read_events(dir, tenant=, type=)", "what": "count + fetch (one call: "
                    "returns the ordered Table; no count-only path)", **r})
    if "duckdb" in engines:
        con = duckdb.connect()
        where = "where tenant = ? and type = ?"
        r = time_query(lambda: con.sql(f"select count(*) from read_parquet('{glob}') {where}",
                                       params=[t, y]).fetchall()[0][0], repeats, deadline)
        out.append({"engine": "DuckDB read_parquet(glob)", "what": "count(*)", **r})
        r = time_query(lambda: con.sql(f"select * from read_parquet('{glob}') {where} order by id",
                                       params=[t, y]).to_arrow_table().num_rows, repeats, deadline)
        out.append({"engine": "DuckDB read_parquet(glob)", "what": "fetch all columns, order by id (Arrow)", **r})
        con.close()
    if "dataset" in engines:
        expr = (pc.field("tenant") == t) & (pc.field("type") == y)
        r = time_query(lambda: ds.dataset(glob_files(directory), schema=EVENT_SCHEMA, format="parquet")
                       .count_rows(filter=expr), repeats, deadline)
        out.append({"engine": "pyarrow.dataset + filter", "what": "count_rows", **r})
        r = time_query(lambda: ds.dataset(glob_files(directory), schema=EVENT_SCHEMA, format="parquet")
                       .to_table(filter=expr).sort_by("id").num_rows, repeats, deadline)
        out.append({"engine": "pyarrow.dataset + filter", "what": "fetch all columns, sort by id (Arrow)", **r})
    if "sqlite" in engines and sqlite_path is not None:
        con = sqlite3.connect(sqlite_path)
        r = time_query(lambda: con.execute("select count(*) from events where tenant = ? and type = ?",
                                           (t, y)).fetchone()[0], repeats, deadline)
        out.append({"engine": "SQLite, index (tenant, type)", "what": "count(*)", **r})
        r = time_query(lambda: len(con.execute("select * from events where tenant = ? and type = ? order by id",
                                               (t, y)).fetchall()), repeats, deadline)
        out.append({"engine": "SQLite, index (tenant, type)", "what": "fetch all columns, order by id (tuples)", **r})
        con.close()
    return out


def glob_files(directory: Path) -> list[str]:
    return [str(f) for f in segment_files(directory)]


# -- 3. registry rebuild ---------------------------------------------------------------------------

def rebuild_once(data_dir: Path) -> dict:
    """What RegistryActor._rebuild does before it touches hosts: checkpoint, read, select, to_pylist, fold,
    checkpoint."""
    t = [time.perf_counter()]
    last_id, views = load_checkpoint(data_dir)
    t.append(time.perf_counter())
    table = read_events(data_dir, min_id=last_id + 1)
    t.append(time.perf_counter())
    rows = table.select(["id", "time", "tenant", "type", "subject", "payload"]).to_pylist()
    t.append(time.perf_counter())
    views = fold(rows, views)
    t.append(time.perf_counter())
    write_checkpoint(data_dir, rows[-1]["id"] if rows else last_id, views)
    t.append(time.perf_counter())
    steps = [b - a for a, b in zip(t, t[1:])]
    return {"total": t[-1] - t[0], "load_ckpt": steps[0], "read": steps[1], "to_pylist": steps[2], "fold": steps[3],
            "write_ckpt": steps[4], "rows": len(rows), "views": views, "_rows": rows, "_table": table}


def bench_rebuild(work: Path, sizes: list[int], repeats: int, started: float) -> list[dict]:
    events = service_events(max(sizes))
    out = []
    for n in sizes:
        data_dir = work / f"registry-{n}"
        t0 = time.perf_counter()
        elog = EventLog(data_dir / "events", roll_rows=100_000)
        try:
            for i in range(0, n, 10_000):  # 10 groups of 1000 rows per append_many: one fsync each
                chunk = events[i:min(n, i + 10_000)]
                elog.append_many([chunk[j:j + 1000] for j in range(0, len(chunk), 1000)])
        finally:
            elog.close()
        write_s = time.perf_counter() - t0
        log(started, f"rebuild: {num(n)} service events written in {write_s:.1f} s "
                     f"({len(segment_files(data_dir / 'events'))} segments)")
        ckpt = data_dir / CHECKPOINT_FILE
        full = []
        for _ in range(repeats):
            ckpt.unlink(missing_ok=True)
            full.append(rebuild_once(data_dir))
        # diagnostic: the same to_pylist with `time` as int64 microseconds instead of tz-aware datetimes
        table = full[-1].pop("_table").select(["id", "time", "tenant", "type", "subject", "payload"])
        t0 = time.perf_counter()
        table.set_column(1, "time", table.column("time").cast(pa.int64())).to_pylist()
        pylist_int_time = time.perf_counter() - t0
        del table
        # a checkpoint at 90%: the first 90% folded and written, as a previous start would have
        at = int(n * 0.9)
        all_rows = full[-1].pop("_rows")
        write_checkpoint(data_dir, at, fold(all_rows[:at], {}))
        del all_rows
        for run in full:
            run.pop("_rows", None)
            run.pop("_table", None)
        saved = ckpt.read_bytes()
        bounded = []
        for _ in range(repeats):
            ckpt.write_bytes(saved)
            bounded.append(rebuild_once(data_dir))
            bounded[-1].pop("_rows")
            bounded[-1].pop("_table")
        same = ({k: dataclasses.asdict(v) for k, v in full[-1]["views"].items()} ==
                {k: dataclasses.asdict(v) for k, v in bounded[-1]["views"].items()})
        for kind, runs in (("full", full), ("ckpt90", bounded)):
            best = sorted(runs, key=lambda r: r["total"])[(len(runs) - 1) // 2]  # the (lower) median run
            out.append({"n": n, "kind": kind, "median": best, "min": min(r["total"] for r in runs),
                        "pylist_int_time": pylist_int_time if kind == "full" else None,
                        "max": max(r["total"] for r in runs), "repeats": len(runs), "services": len(best["views"]),
                        "same_views": same, "write_s": write_s, "ckpt_bytes": len(saved),
                        "segments": len(segment_files(data_dir / "events"))})
            log(started, f"  {kind}: median {ms(best['total'])} ms (read {ms(best['read'])}, to_pylist "
                         f"{ms(best['to_pylist'])}, fold {ms(best['fold'])}) over {num(best['rows'])} rows; "
                         f"same views as full fold: {same}")
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


# -- report ----------------------------------------------------------------------------------------

def report(res: dict, info: dict, args) -> str:
    anchors, actor, inproc = res["anchors"], res["actor"], res["inproc"]
    a, ad, aa, b, c = actor["a"], actor["a-dicts"], actor["a-arrow"], actor["b"], actor["c"]
    fs = anchors["fsync"]

    def cpu(p):
        c = p.get("cpu")
        return f"{c['client_cpu']:.2f} / {c['server_cpu']:.2f} / {c['others_cpu']:.2f}" if c else "-"

    append_rows = [
        ["Solo EventLogActor (Ray), (a)", "8 x 1000", num(a["eps"]), num(a["acks"]), ms(a["p50"]), ms(a["p99"]), cpu(a),
         f"acked {num(a['acked_total'])} = on disk {num(a['on_disk'])}, ids gap-free: {a['gap_free']}"],
        ["EventLogActor, (a)'s rows sent as dicts (no producer-side columns)", "8 x 1000", num(ad["eps"]),
         num(ad["acks"]), ms(ad["p50"]), ms(ad["p99"]), cpu(ad),
         f"acked {num(ad['acked_total'])} = on disk {num(ad['on_disk'])}, ids gap-free: {ad['gap_free']}"],
        ["EventLogActor, (a)'s rows built as Arrow record batches by the producer", "8 x 1000", num(aa["eps"]),
         num(aa["acks"]),
         ms(aa["p50"]), ms(aa["p99"]), cpu(aa),
         f"acked {num(aa['acked_total'])} = on disk {num(aa['on_disk'])}, ids gap-free: {aa['gap_free']}"],
        ["Solo EventLogActor (Ray), (b)", "8 x 1", num(b["eps"]), num(b["acks"]), ms(b["p50"]), ms(b["p99"]), cpu(b),
         f"acked {num(b['acked_total'])} = on disk {num(b['on_disk'])}, gap-free: {b['gap_free']}"],
        ["Solo EventLogActor (Ray), (c)", "1 x 1", num(c["eps"]), num(c["acks"]), ms(c["p50"]), ms(c["p99"]), cpu(c),
         f"acked {num(c['acked_total'])} = on disk {num(c['on_disk'])}, gap-free: {c['gap_free']}"],
        ["Ray floor: no-op async actor, same options", "8 x 1000", num(actor["floor-a"]["eps"]),
         num(actor["floor-a"]["acks"]), ms(actor["floor-a"]["p50"]), ms(actor["floor-a"]["p99"]), cpu(actor["floor-a"]),
         "append returns ids only: Ray call + pickling of the dict rows"],
        ["Ray floor, rows as one Arrow RecordBatch per call", "8 x 1000", num(actor["floor-arrow"]["eps"]),
         num(actor["floor-arrow"]["acks"]), ms(actor["floor-arrow"]["p50"]), ms(actor["floor-arrow"]["p99"]),
         cpu(actor["floor-arrow"]), "what a columnar append argument would cost on the Ray hop"],
        ["Ray floor: no-op async actor, same options", "8 x 1", num(actor["floor-b"]["eps"]),
         num(actor["floor-b"]["acks"]), ms(actor["floor-b"]["p50"]), ms(actor["floor-b"]["p99"]), cpu(actor["floor-b"]),
         ""],
        ["Ray floor: no-op async actor, same options", "1 x 1", num(actor["floor-c"]["eps"]),
         num(actor["floor-c"]["acks"]), ms(actor["floor-c"]["p50"]), ms(actor["floor-c"]["p99"]), cpu(actor["floor-c"]),
         "the Ray round trip alone"],
        ["EventLog.append_many in-process (no Ray), diagnostic", "8 x 1000 per call", num(inproc["many"]["eps"]), "-",
         ms(inproc["many"]["p50"]), ms(inproc["many"]["p99"]), "-", "one fsync per call, rolls every 100k"],
        ["EventLog.append in-process (no Ray), diagnostic", "1", num(inproc["single"]["eps"]), "-",
         ms(inproc["single"]["p50"]), ms(inproc["single"]["p99"]), "-", "one fsync per event"],
        ["(d) bare os.write + os.fsync", f"1 ({fs['bytes']} B)", num(fs["eps"]), "-", ms(fs["p50"]), ms(fs["p99"]), "-",
         "one fsync per event: the durable floor"],
        ["SQLite WAL, synchronous=FULL", "1000 / transaction", num(anchors["sqlite"]["eps"]), "-",
         ms(anchors["sqlite"]["p50"]), ms(anchors["sqlite"]["p99"]), "-", "one writer, json.dumps per row included"],
        ["pyarrow ParquetWriter", "1000 / write_batch", num(anchors["parquet"]["eps"]), "-",
         ms(anchors["parquet"]["p50"]), ms(anchors["parquet"]["p99"]), "-",
         "from the same dict rows; not durable per batch (one fsync at close)"],
    ]
    appends = C.markdown_table(["system", "producers x batch", "events/s", "acks/s", "ack p50 ms", "ack p99 ms",
                                "CPU driver / rest / others", "checks"], append_rows)

    q = res["query"]
    size = f"{args.events / 1e6:g}M"
    qrows = [[r["engine"], r["what"], num(r["rows"]), ms(r["p50"]), ms(r["min"]), ms(r["max"]), r["n"]]
             for r in q["rows_1m"]]
    query_table = C.markdown_table([f"engine ({size} events, Solo's files)", "query", "rows", "p50 ms", "min ms",
                                    "max ms", "runs"], qrows)
    big = ""
    if q.get("rows_10m"):
        bb = q["build_10m"]
        big = (f"\n\n{args.big / 1e6:g}M events (100k-row segments as a roll writes them, each followed by the "
               f"actor's compaction: {bb['layout']}, {bb['bytes'] / 1e6:,.0f} MB, built from columnar data in "
               f"{bb['build_s']:.0f} s):\n\n" + C.markdown_table(
                   [f"engine ({args.big / 1e6:g}M events)", "query", "rows", "p50 ms", "min ms", "max ms", "runs"],
                   [[r["engine"], r["what"], num(r["rows"]), ms(r["p50"]), ms(r["min"]), ms(r["max"]), r["n"]]
                    for r in q["rows_10m"]]))
    elif q.get("skip_10m"):
        big = f"\n\n{args.big / 1e6:g}M events: skipped ({q['skip_10m']})."

    rb = res["rebuild"]
    rb_table = C.markdown_table(
        ["service events", "checkpoint", "rows read", "total ms (median)", "min-max ms", "runs", "read_events ms",
         "to_pylist ms", "fold ms", "write checkpoint ms", "services", "same views as full fold"],
        [[num(r["n"]), "none" if r["kind"] == "full" else f"at 90% ({r['ckpt_bytes'] / 1e3:,.0f} kB)",
          num(r["median"]["rows"]), ms(r["median"]["total"]), f"{ms(r['min'])}-{ms(r['max'])}", r["repeats"],
          ms(r["median"]["read"]), ms(r["median"]["to_pylist"]), ms(r["median"]["fold"]), ms(r["median"]["write_ckpt"]),
          num(r["services"]), "-" if r["kind"] == "full" else r["same_views"]] for r in rb])
    rb_note = "; ".join(f"{num(r['n'])} events: {ms(r['median']['to_pylist'])} ms as the registry does it, "
                        f"{ms(r['pylist_int_time'])} ms with `time` cast to int64 first"
                        for r in rb if r["kind"] == "full")

    solo_q = next(r for r in q["rows_1m"] if r["engine"].startswith("solo"))
    duck_q = [r for r in q["rows_1m"] if r["engine"].startswith("DuckDB")]
    checks = [
        ["durable appends, 8 concurrent producers of 1000-row dict batches (EventLogHandle.append)",
         f"{num(a['eps'])} events/s", f">= {num(TARGET_APPEND_EPS)} events/s", a["eps"] >= TARGET_APPEND_EPS],
        ["durable appends, 8 concurrent producers of 1000-row Arrow batches",
         f"{num(aa['eps'])} events/s", f">= {num(TARGET_APPEND_EPS)} events/s", aa["eps"] >= TARGET_APPEND_EPS],
        ["single-append ack p50 (c=1) minus bare fsync p50", f"{ms(c['p50'])} - {ms(fs['p50'])} = "
         f"{ms(c['p50'] - fs['p50'])} ms", f"<= {TARGET_ACK_OVER_FSYNC_MS:g} ms",
         c["p50"] - fs["p50"] <= TARGET_ACK_OVER_FSYNC_MS / 1000],
        [f"one tenant and one type on {size} events, solo.events.read_events p50", f"{ms(solo_q['p50'])} ms",
         f"<= {TARGET_QUERY_MS:g} ms", solo_q["p50"] <= TARGET_QUERY_MS / 1000],
    ] + [
        [f"same query on {args.big / 1e6:g}M events, solo.events.read_events p50", f"{ms(r['p50'])} ms",
         f"<= {TARGET_QUERY_BIG_MS:g} ms", r["p50"] <= TARGET_QUERY_BIG_MS / 1000]
        for r in q.get("rows_10m", []) if r["engine"].startswith("solo")
    ] + [[f"same query, {r['engine']} {r['what']} (context)", f"{ms(r['p50'])} ms", "-", None] for r in duck_q] + [
        [f"registry rebuild, {num(r['n'])} service events, "
         + ("no checkpoint" if r["kind"] == "full" else "checkpoint at 90%") + " (context)",
         f"{ms(r['median']['total'])} ms", "-", None] for r in rb]
    verdicts = C.markdown_table(["figure", "measured", "target", "verdict"],
                                [[n, m, t, "-" if ok is None else ("met" if ok else "**MISSED**")]
                                 for n, m, t, ok in checks])
    b1 = q["build_1m"]
    return (
        "## Event log: appends, queries, registry rebuild (bench/events.py)\n\n"
        f"Command: `{C.command_line()}`  \n"
        f"Machine: {info['machine']}; pyarrow {pa.__version__}, duckdb {info['duckdb']}, SQLite "
        f"{sqlite3.sqlite_version}; temp dirs on {info['fs']}  \n"
        f"Total run time {info['elapsed']:.0f} s. Cores used by processes outside the benchmark, before / during each "
        f"phase (above ~0.1 during a phase: disturbed by other jobs, rerun): "
        + ", ".join(f"{k} {v}" for k, v in info["others"].items()) + ".\n\n"
        "### Appends\n\n"
        f"EventLogActor created by `get_or_create_event_log` (as the supervisor does, default `[events]` config: roll "
        f"every 5 s or at 100k events, then merge runs of 8+ segments under 500k rows) in a private local Ray (`num_cpus=2`); "
        f"producers are coroutines in the driver awaiting `EventLogHandle.append(rows)` (the producers' API: a group of "
        f"64+ rows is turned into Arrow columns in the producer's process before the Ray call), rows are dicts with a "
        f"dict payload (~100 B JSON); two more points send the same rows straight to `actor.append.remote` as dicts "
        f"and as Arrow batches; {args.warmup:g} s "
        f"warm-up then {args.duration:g} s measured; acks completing inside the window count. An *ack* is one "
        f"`append` call returning its id range after the group commit's fsync. Anchors ran without Ray, one writer, "
        f"in a temp dir on the same file system. The *Ray floor* rows drive a no-op async actor with the same options "
        f"(its append only returns ids) with the same rows: what the Ray hop alone allows. CPU: cores of the driver "
        f"(producers) / the rest of the process tree (actor, Ray) / processes outside the benchmark (above ~0.1: "
        f"disturbed) during the window.\n\n{appends}\n\n"
        f"Inside EventLog, per 1000-row group (in-process): building the Arrow batch from dicts (`_batch`: per-row "
        f"Python + json.dumps) {ms(inproc['build_1000'])} ms, Arrow IPC encode {ms(inproc['encode_1000'])} ms; "
        f"rolling ~{num(inproc['roll_rows'])} committed events to a segment {ms(inproc['roll'])} ms (in the actor "
        f"this runs in its maintenance thread while group commits go on; only sealing the tail, a WAL file switch, "
        f"takes the append lock).\n\n"
        "### Query: one tenant and one type\n\n"
        f"{size} events (10 tenants x 20 types uniform, 100 subjects, ~100 B JSON payloads, generated columnar) "
        f"written through `EventLog.append_many` (100 groups of 1000 per call) with roll_rows=100k: "
        f"rolled every 100k and compacted as the actor does: {b1['layout']} ({ROW_GROUP_ROWS:,}-row row groups, "
        f"sorted by tenant, type, id), "
        f"{b1['bytes'] / 1e6:,.0f} MB, appended in {b1['append_s']:.1f} s ({num(args.events / b1['append_s'])} "
        f"events/s in-process, rows prepared in {b1['gen_s']:.1f} s, rolls and compactions {b1['maint_s']:.1f} s). Query `tenant = '{QUERY_TENANT}' and "
        f"type = '{QUERY_TYPE}'`; one warm-up run then {args.repeats} timed runs each, files in the page cache. "
        f"SQLite holds the same rows (loaded in {q['sqlite_load_s']:.1f} s) with an index on (tenant, type)."
        f"\n\n{query_table}{big}\n\n"
        "### Registry rebuild\n\n"
        "Service events over 1000 services (10 tenants x 100), coherent lifecycles: deploying + started, then "
        "mostly crashed + restarting + restarted, sometimes stopped and deployed again; payloads as the registry "
        "writes them. Written through EventLog.append_many (roll_rows=100k). Timed as `RegistryActor._rebuild` "
        "does it before touching hosts: `load_checkpoint`, `read_events(data_dir, min_id=last+1)`, select 6 columns, "
        f"`to_pylist`, `fold`, `write_checkpoint`; the median run of *runs* is shown with its breakdown. "
        "With a checkpoint: the first 90% folded and checkpointed beforehand (restored before each run).\n\n"
        f"{rb_table}\n\nWhere `to_pylist` goes (the `time` column becomes tz-aware datetimes): {rb_note}.\n\n"
        f"{verdicts}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per append point (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per append point (default 1)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per query (default 10)")
    parser.add_argument("--rebuild-repeats", type=int, default=3, help="timed runs per rebuild point (default 3)")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the query log (default 1M)")
    parser.add_argument("--big", type=int, default=10_000_000, help="events in the optional big log (0: skip)")
    parser.add_argument("--rebuild-sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="service events in the rebuild logs (default 100000 1000000)")
    parser.add_argument("--quiet-wait", type=float, default=8.0,
                        help="before each phase, wait up to this many seconds for other processes to go idle")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    import duckdb

    started = time.monotonic()
    info = {"machine": C.machine_line(C.machine()), "duckdb": duckdb.__version__}
    res: dict = {}
    info["others"] = {}

    @contextlib.contextmanager
    def phase(name: str, metered: bool = True):
        """Wait (up to --quiet-wait s) for other processes to go idle, then record the cores they used meanwhile.
        Not metered for the Ray phase: Ray's start-up and shutdown processes leave the tree and would count as
        others; its table has the figure per measured window instead."""
        before = C.wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else float("nan")
        meter = C.CpuMeter()
        meter.start()
        try:
            yield
        finally:
            info["others"][name] = f"{before:.2f} / " + (f"{meter.stop()['others_cpu']:.2f}" if metered else
                                                          "see the table")

    with C.hard_deadline(HARD_LIMIT, "bench/events.py"), C.workdir("solo-bench-events-") as work:
        info["fs"] = next((f"{line.split()[2]} ({line.split()[0]})" for line in open("/proc/mounts")
                           if line.split()[1] == "/"), "?")
        # 1. appends: anchors first (no Ray running), then the actor
        batches = [producer_rows(1000, seed) for seed in range(8)]
        with phase("anchors"):
            log(started, "appends: anchors (fsync per event, SQLite, ParquetWriter) and EventLog in-process")
            res["anchors"] = {"fsync": anchor_fsync(work, 2.0), "sqlite": anchor_sqlite(work, batches, 3.0),
                              "parquet": anchor_parquet(work, batches, 3.0)}
            res["inproc"] = eventlog_inprocess(work, batches, 3.0)
        log(started, f"  fsync p50 {ms(res['anchors']['fsync']['p50'])} ms; "
                     f"SQLite {num(res['anchors']['sqlite']['eps'])}"
                     f"/s; Parquet {num(res['anchors']['parquet']['eps'])}/s; EventLog in-process "
                     f"{num(res['inproc']['many']['eps'])}/s")
        with phase("Ray appends", metered=False):
            res["actor"] = bench_actor(work, args, started)

        # 3. registry rebuild (before the big query data, so the 10M step is the only optional one)
        with phase("rebuild"):
            res["rebuild"] = bench_rebuild(work, args.rebuild_sizes, args.rebuild_repeats, started)

        # 2. queries
        rng = np.random.default_rng(42)
        q: dict = {}
        qdir = work / "q1m" / "events"
        log(started, f"query: writing {num(args.events)} events through EventLog.append_many")
        q["build_1m"] = build_1m(qdir, args.events, rng)
        sqlite_path = work / "q1m.sqlite"
        q["sqlite_load_s"] = load_sqlite(sqlite_path, read_events(qdir))
        log(started, f"  {q['build_1m']['segments']} segments, append {q['build_1m']['append_s']:.1f} s; SQLite loaded "
                     f"in {q['sqlite_load_s']:.1f} s; querying")
        with phase("queries"):
            q["rows_1m"] = query_engines(qdir, sqlite_path, args.repeats)
        for r in q["rows_1m"]:
            log(started, f"  {r['engine']} / {r['what']}: p50 {ms(r['p50'])} ms ({r['rows']} rows)")
        sqlite_path.unlink()
        shutil.rmtree(qdir.parent, ignore_errors=True)
        res["query"] = q

        # the optional 10M point: only if it fits the budget (build ~0.25 s per 100k segment, Solo reads all of it)
        solo_1m = next(r for r in q["rows_1m"] if r["engine"].startswith("solo"))["p50"]
        remaining = HARD_LIMIT - 25 - (time.monotonic() - started)
        estimate = args.big / 100_000 * 0.3 + 4 * solo_1m * args.big / 1_000_000 + 15
        info["elapsed"] = time.monotonic() - started
        if not args.no_write:  # write now, so a 10M step that overruns loses nothing
            C.write_section("events", report(res, info, args))
        if args.big <= 0:
            q["skip_10m"] = "--big 0"
        elif estimate > remaining:
            q["skip_10m"] = f"estimated {estimate:.0f} s, {remaining:.0f} s left of the {HARD_LIMIT} s budget"
        else:
            big = work / "q10m" / "events"
            log(started, f"query: building {num(args.big)} events (estimate {estimate:.0f} s, {remaining:.0f} s left)")
            deadline = started + HARD_LIMIT - 25
            try:
                q["build_10m"] = build_big(big, args.big, rng, deadline - 30)
                if q["build_10m"] is None:
                    q["skip_10m"] = "building the segments ran out of the time budget"
                else:
                    with phase("big queries"):
                        rows = query_engines(big, None, 3, deadline=deadline, engines=("duckdb",))
                        rows += query_engines(big, None, 3, deadline=deadline, engines=("solo",))
                    q["rows_10m"] = rows
                    for r in rows:
                        log(started, f"  10M {r['engine']} / {r['what']}: p50 {ms(r['p50'])} ms ({r['rows']} rows)")
            except TimeoutError:
                q.pop("build_10m", None)
                q["skip_10m"] = f"started, but the run hit its {HARD_LIMIT} s hard limit; no 10M figures"
            shutil.rmtree(big.parent, ignore_errors=True)
    info["elapsed"] = time.monotonic() - started
    text = report(res, info, args)
    print("\n" + text)
    if not args.no_write:
        C.write_section("events", text)
        print(f"wrote {C.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
