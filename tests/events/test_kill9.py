"""kill -9 the event log's process during a steady stream of appends, then check what survived."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from solo.events import read_events
from solo.events.log import EventLog

APPENDER = Path(__file__).with_name("appender.py")


def run_and_kill(directory: Path, seconds: float, seed: int) -> set[int]:
    proc = subprocess.Popen([sys.executable, str(APPENDER), str(directory), "300", str(seed)],
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    acked: set[int] = set()
    deadline = None
    for line in proc.stdout:
        if line.startswith("READY"):
            deadline = time.monotonic() + seconds
            continue
        _, first, last = line.split()
        acked.update(range(int(first), int(last) + 1))
        if deadline and time.monotonic() >= deadline:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(10)
    proc.stdout.close()
    return acked


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_acknowledged_event_survives_kill_9_exactly_once(tmp_path, seed):
    acked: set[int] = set()
    for round_ in range(3):  # kill, recover, keep appending, kill again
        acked |= run_and_kill(tmp_path, 0.4 + 0.3 * round_, seed * 10 + round_)
        log = EventLog(tmp_path)  # recovery: torn WAL tail cut, leftovers removed
        log.wal.close()
        ids = read_events(tmp_path).column("id").to_pylist()
        assert ids == list(range(1, len(ids) + 1)), "ids must be gap-free and unique"
        assert acked <= set(ids), f"lost acknowledged events: {sorted(acked - set(ids))[:10]}"
        assert log.last_id == len(ids)
    segments = list(tmp_path.glob("segment-*.parquet"))
    assert segments, "rolls happened during the run"
    for segment in segments:
        pq.read_table(segment)  # none torn or unreadable
    assert not list(tmp_path.glob("*.tmp"))
