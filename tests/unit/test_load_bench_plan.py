"""bench/load.py's plan: how the load is sized to the machine and how the phases alternate.

The benchmark's verdict rests on these: a baseline measured in the wrong stretch, or a noisy tenant
not sending 10x its share, would make the p99 ratio mean something else."""
import argparse
import sys
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
    segments = load.alternating(rounds=2, duration=4.0)  # unloaded [3, 5), loaded [6, 8), unloaded [8.5, 10.5)...
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


def test_drift_reads_only_the_unloaded_stretches():
    steady = {"stretches": [("unloaded", 9.0), ("loaded", 90.0), ("unloaded", 12.0), ("loaded", 11.0)]}
    assert load.drift(steady) == pytest.approx(12.0 / 9.0)  # a slow loaded stretch is the figure under test
    drifted = {"stretches": [("unloaded", 10.0), ("loaded", 12.0), ("unloaded", 45.0), ("loaded", 30.0)]}
    assert load.drift(drifted) > load.DRIFT_LIMIT

