#!/usr/bin/env python
"""Durable event appends through the event-log actor: row dicts against Arrow tables, same run.

    python bench/event_appends_columnar.py      # ~30 s; prints events/s (8 producers x 1000 events)

Producers are coroutines in the driver awaiting `actor.append.remote(batch)`; an append returns
after the group commit's fsync. bench/events.py has the SQLite / ParquetWriter / fsync anchors.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: loopback only

import pyarrow as pa  # noqa: E402
import ray  # noqa: E402

from solo.runtime.event_log_actor import get_or_create_event_log  # noqa: E402

PRODUCERS, BATCH, SECONDS, WARMUP = 8, 1000, 5.0, 1.0


async def measure(actor, batch) -> float:
    done = 0
    start = time.monotonic() + WARMUP
    stop = start + SECONDS

    async def producer():
        nonlocal done
        while time.monotonic() < stop:
            await actor.append.remote(batch)
            if time.monotonic() > start:
                done += BATCH

    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    return done / SECONDS


def main() -> None:
    rows = [{"tenant": f"tenant-{i % 10}", "type": "load.tick", "subject": "s",
             "payload": {"i": i, "pad": "x" * 60}} for i in range(BATCH)]
    table = pa.table({"tenant": [r["tenant"] for r in rows], "type": [r["type"] for r in rows],
                      "subject": [r["subject"] for r in rows], "payload": [json.dumps(r["payload"]) for r in rows]})
    directory = Path(tempfile.mkdtemp(prefix="solo-bench-events-"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="bench-columnar")
    try:
        actor = get_or_create_event_log(directory, "bench-columnar")
        for label, batch in (("row dicts", rows), ("Arrow table", table)) * 2:
            print(f"{label:12} {asyncio.run(measure(actor, batch)):>10,.0f} durable events/s "
                  f"({PRODUCERS} producers x {BATCH})", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
