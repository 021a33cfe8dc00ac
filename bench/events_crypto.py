#!/usr/bin/env python
"""What [events] encrypt costs: the EventLog in-process (no Ray), plaintext against encrypted, same rows.

    python bench/events_crypto.py            # ~1 min; writes the "events-crypto" section of bench/RESULTS.md

  append   append_many of 8 producers x 1000 rows (one fsync), and single-event appends (fsync each)
  roll     one roll of 100k committed events into a segment (the actor's maintenance)
  query    a log of --events events (10 tenants x 20 types, as bench/events.py writes it, rolled every 100k and
           compacted): read_events(tenant=, type=) p50, a whole read_events() p50, and events_duckdb + count(*)

The two modes alternate, `--rounds` times, each in a fresh temp dir; the table shows the median over rounds
(and the min-max), so a busy neighbour skews both modes alike rather than one.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import events as E  # noqa: E402  (bench/events.py: the same rows and helpers)
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from solo.events import crypto, read_events  # noqa: E402
from solo.events.log import EventLog  # noqa: E402
from solo.events.reader import events_duckdb  # noqa: E402
from solo.events.segments import INDEXES, segment_files  # noqa: E402

MODES = ("plaintext", "encrypted")


def open_log(directory: Path, mode: str, **kw) -> EventLog:
    key = crypto.open_key(directory, mode == "encrypted") if mode == "encrypted" else None
    return EventLog(directory, key=key, encrypt=key is not None, **kw)


def appends(work: Path, mode: str, duration: float) -> dict:
    batches = [E.producer_rows(1000, seed) for seed in range(8)]
    elog = open_log(work / "events", mode, roll_rows=10**9, auto_roll=False)
    try:
        calls, wall, lat = E.timed_loop(lambda: elog.append_many(batches), duration, 10_000)
        one = batches[0][:1]
        calls1, wall1, lat1 = E.timed_loop(lambda: elog.append(one), min(duration, 2.0), 20_000)
        elog.roll()
        while elog._tail_rows < 100_000:
            elog.append_many(batches)
        t0 = time.perf_counter()
        elog.roll()
        roll = time.perf_counter() - t0
    finally:
        elog.close()
    return {"eps": calls * 8000 / wall, "many_p50": E.pct(lat, 50), "single_p50": E.pct(lat1, 50),
            "single_eps": calls1 / wall1, "roll": roll}


def queries(work: Path, mode: str, n: int, repeats: int) -> dict:
    directory = work / "events"
    elog = open_log(directory, mode, roll_rows=100_000, auto_roll=False)
    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    try:
        for first in range(1, n + 1, 100_000):
            cols = E.gen_columns(first, min(100_000, n - first + 1), rng)
            rows = pa.table({k: v for k, v in cols.items() if k != "id"}).to_pylist()
            elog.append_many([rows[i:i + 1000] for i in range(0, len(rows), 1000)])
            elog.roll()
            elog.compact(small_rows=E.COMPACT_BELOW_ROWS)
    finally:
        elog.close()
    build = time.perf_counter() - t0
    INDEXES._entries.clear()  # the first query parses (and decrypts) the footers, as a new reader would
    t0 = time.perf_counter()
    first_rows = read_events(work, tenant=E.QUERY_TENANT, type=E.QUERY_TYPE).num_rows
    cold = time.perf_counter() - t0
    one = E.time_query(lambda: read_events(work, tenant=E.QUERY_TENANT, type=E.QUERY_TYPE).num_rows, repeats)
    assert one["rows"] == first_rows
    whole = E.time_query(lambda: read_events(work).num_rows, max(2, repeats // 3))

    def duck() -> int:
        return events_duckdb(work).sql("select count(*) from events").fetchall()[0][0]

    ddb = E.time_query(duck, max(2, repeats // 3))
    assert whole["rows"] == ddb["rows"] == n
    return {"build": build, "cold": cold, "one": one["p50"], "rows": first_rows, "whole": whole["p50"],
            "duckdb": ddb["p50"], "bytes": sum(p.stat().st_size for p in segment_files(directory))}


def spread(values: list[float], fmt) -> str:
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})" if len(values) > 1 \
        else fmt(values[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per append point")
    parser.add_argument("--events", type=int, default=300_000, help="events in the query log")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per query")
    parser.add_argument("--rounds", type=int, default=2, help="plaintext/encrypted rounds, alternating")
    parser.add_argument("--quiet-wait", type=float, default=5.0, help="seconds to wait for a quiet box first")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    others = C.wait_quiet(args.quiet_wait)
    info = C.machine()
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            with C.workdir("solo-bench-evcrypt-") as work:
                point = {**appends(work / "a", mode, args.duration), **queries(work / "q", mode, args.events,
                                                                               args.repeats)}
            results[mode].append(point)
            print(f"round {r + 1} {mode}: {point['eps']:,.0f} ev/s, one-tenant query {point['one'] * 1e3:.2f} ms",
                  flush=True)

    def col(mode: str, key: str, fmt) -> str:
        return spread([p[key] for p in results[mode]], fmt)

    ms = lambda s: f"{s * 1e3:.2f}"  # noqa: E731
    eps = lambda v: f"{v:,.0f}"  # noqa: E731
    rows = []
    for label, key, fmt in (("append_many 8 x 1000 rows, events/s", "eps", eps),
                            ("append_many 8 x 1000 rows, p50 ms", "many_p50", ms),
                            ("append 1 event (fsync), p50 ms", "single_p50", ms),
                            ("roll of 100k events into a segment, ms", "roll", ms),
                            (f"write {args.events:,} events (append, roll, compact), s", "build",
                             lambda s: f"{s:.2f}"),
                            ("read_events(tenant, type), first query (footers parsed), ms", "cold", ms),
                            ("read_events(tenant, type), p50 ms", "one", ms),
                            (f"read_events() of all {args.events:,}, p50 ms", "whole", ms),
                            ("events_duckdb() + count(*), p50 ms", "duckdb", ms),
                            ("segment bytes", "bytes", lambda b: f"{b / 1e6:.1f} MB")):
        rows.append([label, col("plaintext", key, fmt), col("encrypted", key, fmt)])
    body = "\n".join([
        "## Event log encryption at rest (bench/events_crypto.py)", "",
        f"`{C.command_line()}`", "",
        C.machine_line(info) + f"; other processes' CPU before the run: {others:.2f} cores", "",
        f"The EventLog in-process (no Ray), {args.rounds} alternating rounds; median (min-max) over rounds. "
        f"The one-tenant query returns {results['plaintext'][0]['rows']:,} rows.", "",
        C.markdown_table(["", "plaintext", "[events] encrypt = true"], rows)])
    print(body)
    if not args.no_write:
        C.write_section("events-crypto", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
