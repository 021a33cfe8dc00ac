"""bench/load.py's plan: how the load is sized to the machine, how the phases alternate, and that
the noisy tenant's callers call only while the flood is on.

The benchmark's verdict rests on these: a baseline measured in the wrong stretch, the noisy tenant
calling in the unloaded stretches, or rates not sized as documented would make the p99 ratio mean
something else."""
import argparse
import asyncio
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load  # noqa: E402


def test_phases_alternate_with_the_measured_time_split_evenly():
    segments = load.alternating(rounds=5, duration=10.0)
    assert [s.kind for s in segments] == ["unloaded", "loaded"] * 5
    assert load.measured_seconds(segments, "unloaded") == pytest.approx(10.0)
    assert load.measured_seconds(segments, "loaded") == pytest.approx(10.0)
    # back to back, each counting only after its settle time
    for before, after in zip(segments, segments[1:]):
        assert after.start == pytest.approx(before.end)
    assert segments[0].measured - segments[0].start == load.FIRST_WARMUP
    assert all(s.measured - s.start == load.QUIET_SETTLE for s in segments[2::2])
    assert all(s.measured - s.start == load.FLOOD_SETTLE for s in segments[1::2])


def test_a_call_counts_only_inside_a_measured_window():
    segments = load.alternating(rounds=2, duration=4.0)  # unloaded [3, 5), loaded [6, 8), unloaded [9, 11)...
    assert load.kind_at(segments, 1.0) is None  # warm-up
    assert load.kind_at(segments, 4.0) == "unloaded"
    assert load.kind_at(segments, 5.5) is None  # the flood's onset
    assert load.kind_at(segments, 7.0) == "loaded"
    assert load.kind_at(segments, 8.2) is None  # just after the flood stopped
    assert load.kind_at(segments, 9.0) == "unloaded"
    assert load.kind_at(segments, segments[-1].end) is None


def test_rates_come_from_the_probed_capacity():
    args = argparse.Namespace(rate=None, noisy_rate=None)
    load.set_rates(args, capacity=2000.0)  # a share is 200 calls/s
    assert args.rate == 80  # 0.4 of a share
    assert args.noisy_rate == 2000  # 10x a share
    assert args.capacity == 2000.0


def test_rates_given_by_hand_are_kept():
    args = argparse.Namespace(rate=50.0, noisy_rate=None)
    load.set_rates(args, capacity=None)
    assert args.rate == 50.0
    assert args.noisy_rate == 1250  # still 10x the share that 50 calls/s is 0.4 of
    args = argparse.Namespace(rate=None, noisy_rate=900.0)
    load.set_rates(args, capacity=3000.0)
    assert (args.rate, args.noisy_rate) == (120, 900.0)


def test_jain_index():
    assert load.jain([100.0] * 9) == pytest.approx(1.0)
    assert load.jain([100.0] + [0.0] * 9) == pytest.approx(0.1)
    assert load.jain([0.0, 0.0]) == 0.0


def test_the_baseline_context_reads_only_the_unloaded_stretches():
    run = {"stretches": [("unloaded", 9.0), ("loaded", 90.0), ("unloaded", 12.0), ("loaded", 11.0)]}
    assert load.spread(run) == pytest.approx(12.0 / 9.0)  # a slow loaded stretch is the figure under test
    assert load.first_quiet(run) == 9.0


class FakeStub:
    """Records when each call was made; answers after 1 ms."""

    def __init__(self):
        self.calls: list[float] = []

    async def Invoke(self, request, metadata=None, timeout=None):
        self.calls.append(time.perf_counter())
        await asyncio.sleep(0.001)


SEGMENTS = [load.Segment("unloaded", 0.0, 0.05, 0.2), load.Segment("loaded", 0.2, 0.25, 0.4),
            load.Segment("unloaded", 0.4, 0.45, 0.6)]


def run_caller(flood: bool) -> tuple[list[float], dict]:
    stub, stats = FakeStub(), {"unloaded": load.Stats(), "loaded": load.Stats()}

    async def go():
        start = time.perf_counter()
        await load.caller(stub, None, (), stats, SEGMENTS, start, 0.01, flood)
        return [t - start for t in stub.calls]
    return asyncio.run(go()), stats


def test_a_flood_caller_calls_only_while_the_flood_is_on():
    offsets, stats = run_caller(flood=True)
    assert len(offsets) > 5
    assert all(0.2 <= t < 0.4 + 0.02 for t in offsets), offsets  # (a call already due may start at the edge)
    assert stats["loaded"].ok and not stats["unloaded"].ok


def test_a_well_behaved_caller_calls_throughout_and_counts_by_finish_time():
    offsets, stats = run_caller(flood=False)
    assert min(offsets) < 0.05 and max(offsets) > 0.45
    assert stats["loaded"].ok and stats["unloaded"].ok
    # only calls that finished inside a measured window count: none from the first 50 ms warm-up
    assert len(stats["unloaded"].ok) + len(stats["loaded"].ok) < len(offsets)


class ShedStub(FakeStub):
    """Sheds every call with a retry-after of 1 s."""

    async def Invoke(self, request, metadata=None, timeout=None):
        import grpc
        self.calls.append(time.perf_counter())
        raise grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
                                   grpc.aio.Metadata(("retry-after-ms", "1000")), "shed")


def shed_calls(hostile: bool) -> tuple[int, load.Stats]:
    stub, stats = ShedStub(), {"unloaded": load.Stats(), "loaded": load.Stats()}
    segments = [load.Segment("loaded", 0.0, 0.0, 0.3)]

    async def go():
        await load.caller(stub, None, (), stats, segments, time.perf_counter(), 0.01, True, hostile)
    asyncio.run(go())
    return len(stub.calls), stats["loaded"]


def test_a_shed_caller_waits_its_retry_after_unless_hostile():
    polite, stats = shed_calls(hostile=False)
    assert polite == 1 and stats.shed == 1  # then it waits 1 s, past the end of the flood
    hostile, stats = shed_calls(hostile=True)
    assert hostile > 10 and stats.shed == hostile  # it keeps its 10 ms pace
