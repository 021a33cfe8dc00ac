#!/usr/bin/env python
"""Overload: 1,000+ concurrent callers across 10 tenants, one of them sending 10x its share.

    python bench/load.py          # 3-5 min, hard limit 420 s; writes the "load" section of bench/RESULTS.md

Solo (`solo up --foreground` subprocess) with admission limits small enough that this load
overloads it ([limits] max_in_flight = 128, service_queue_limit = 32, no token rate limit), run
three times: with the adaptive limit and fair rate cap (the default), the same with a noisy tenant
whose callers ignore the retry-after and keep their pace (a client that does not cooperate), and
with the fixed limit only. Each
tenant deploys the same service: an async method that works 2 ms.

The load is sized to the machine: first a capacity probe (a Solo of its own, every tenant's 8
callers back to back for 3 s) measures how many calls/s the gateway serves here, generator
included. A tenant's share is a tenth of that; a well-behaved tenant sends 0.4 of its share
(--rate overrides) and the noisy one, with 10x the callers, tries to send 10x its share
(--noisy-rate overrides); the report gives the probed capacity. Every caller makes a call every
callers/rate seconds (random phase). The callers run in --workers processes (a grpc.aio channel
per tenant in each), started at the same instant; a shed call (RESOURCE_EXHAUSTED) waits its
retry-after before trying again. Phases:

  unloaded  9 well-behaved tenants x 60 callers (0.4 of a share each)
  loaded    the same + the noisy tenant x 600 callers: 1,140 callers

The two phases alternate in one run of the generator (--rounds, default 5: unloaded, loaded,
unloaded, ...), 2 s measured of each per round: the well-behaved callers never stop and the noisy
tenant's callers call only in the loaded stretches. The first unloaded stretch counts after a 3 s
warm-up, a later one 1 s after the flood stops, a loaded one 1 s after the flood starts (its
onset). On a shared 2-core machine whose speed drifts by tens of percent within minutes, one
unloaded phase followed by one loaded phase compared two different machines; alternating weighs
the drift on both alike. Each stretch's p99 is listed under the table; as context the report
also gives the loaded p99 against the first unloaded stretch alone (before any flood) and how far
the unloaded stretches spread.

Reported: the well-behaved tenants' admitted p99 against the unloaded p99 (target <= 3x), goodput
per tenant and Jain's fairness index (target >= 0.9), shed and timed-out calls, and whether the
gateway still answers; beside them, the same p99 as the gateway timed it (its Prometheus histogram)
and the load generator's own event-loop stalls, to tell a server tail from a client one. Ray
Serve runs the same load in the same run (one deployment, 2 ms of work, max_ongoing_requests = 32,
max_queued_requests = 128: its shedding), callers grouped the same way.
"""
from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before anything imports ray

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import grpc  # noqa: E402

from solo._proto import solo_pb2 as pb  # noqa: E402
from solo._proto import solo_pb2_grpc  # noqa: E402

HARD_LIMIT = 420
TENANTS = [f"tenant-{i}" for i in range(10)]
NOISY = TENANTS[-1]
WELL = TENANTS[:-1]
TARGET_P99_X, TARGET_JAIN = 3.0, 0.9
CONFIG = """
[limits]
max_in_flight = 128
service_queue_limit = 32
token_rate_per_second = 0
"""
WORK = '''
import asyncio

class Work:
    async def work(self):
        await asyncio.sleep(0.002)
        return 1
'''
HOSTILE = "solo (noisy ignores retry-after)"  # the default Solo, the noisy tenant's callers keeping their pace
SERVE_SERVICER = "_serve_grpc.add_InvokeServicer_to_server"


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if any(values) else 0.0


class Stats:
    def __init__(self):
        self.ok: list[float] = []  # latencies of admitted, answered calls in the window
        self.at: list[float] = []  # when each of them finished (wall clock), for timelines
        self.shed_at: list[float] = []  # when each shed answer came (wall clock)
        self.shed = self.timeouts = self.errors = 0
        self.first_error = ""


@dataclass(frozen=True)
class Segment:
    """A stretch of a run, in seconds from its start: calls that finish in [measured, end) count for `kind`."""
    kind: str  # "unloaded", "loaded" (the flood is on) or "probe"
    start: float
    measured: float
    end: float


FIRST_WARMUP = 3.0  # seconds before the first unloaded segment counts
QUIET_SETTLE = 1.0  # ...before a later one counts (the flood has just stopped: as long as a flood's onset)
FLOOD_SETTLE = 1.0  # ...before a loaded one counts (the flood's onset: a shed storm while the retry-after rises)


def alternating(rounds: int, duration: float) -> list[Segment]:
    """The unloaded and the loaded phase cut into `rounds` alternations, `duration` measured seconds of each
    in all: unloaded, loaded, unloaded, loaded... A slow drift of the machine's speed (a shared 2-core VM
    moves by tens of percent within minutes) then weighs on both phases alike, not on one."""
    piece, t, segments = duration / rounds, 0.0, []
    for i in range(rounds):
        settle = FIRST_WARMUP if i == 0 else QUIET_SETTLE
        segments.append(Segment("unloaded", t, t + settle, t + settle + piece))
        t += settle + piece
        segments.append(Segment("loaded", t, t + FLOOD_SETTLE, t + FLOOD_SETTLE + piece))
        t += FLOOD_SETTLE + piece
    return segments


def measured_seconds(segments: list[Segment], kind: str) -> float:
    return sum(s.end - s.measured for s in segments if s.kind == kind)


def kind_at(segments: list[Segment], t: float) -> str | None:
    """The kind whose measured window holds `t` (seconds from the start), else None."""
    return next((s.kind for s in segments if s.measured <= t < s.end), None)


LAG_TICK = 0.005  # the load generator's own event loop is checked this often
LAG_REPORT = 0.02  # ...and a tick later than this is recorded (wall clock it ended, seconds late)


async def loop_lag(lags: list[tuple[float, float]], stop: float) -> None:
    """The generator's own stalls: a call that waited on a late client loop is not the server's latency."""
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        late = time.perf_counter() - t0 - LAG_TICK
        if late > LAG_REPORT:
            lags.append((time.perf_counter(), late))


async def caller(stub, request, metadata, stats: dict[str, Stats], segments: list[Segment], start: float,
                 period: float, flood: bool, hostile: bool = False) -> None:
    """One caller: a call every `period` seconds (random phase; at once when 0); a shed call waits its
    retry-after. A `flood` caller (the noisy tenant's) calls only inside loaded segments; a `hostile` one
    ignores the retry-after and keeps its pace."""
    import random
    stop = start + segments[-1].end
    loaded = [(start + s.start, start + s.end) for s in segments if s.kind == "loaded"]
    await asyncio.sleep(random.random() * period)
    while (now := time.perf_counter()) < stop:
        if flood and not any(a <= now < b for a, b in loaded):
            later = [a for a, _ in loaded if a > now]
            if not later:
                return
            await asyncio.sleep(later[0] - now + random.random() * period)
            continue
        t0 = now
        try:
            await stub.Invoke(request, metadata=metadata, timeout=5)
            t1 = time.perf_counter()
            kind = kind_at(segments, t1 - start)
            if kind:
                stats[kind].ok.append(t1 - t0)
                stats[kind].at.append(t1)
            await asyncio.sleep(max(0.0, t0 + period - t1))
        except grpc.aio.AioRpcError as exc:
            t1 = time.perf_counter()
            window = stats.get(kind_at(segments, t1 - start)) or Stats()  # (outside the windows: not counted)
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED or (
                    exc.code() == grpc.StatusCode.UNAVAILABLE and "queue" in (exc.details() or "").lower()):
                window.shed += 1
                window.shed_at.append(t1)
                trailers = dict(exc.trailing_metadata() or ())
                if flood and hostile:
                    await asyncio.sleep(max(0.0, t0 + period - t1))
                else:
                    await asyncio.sleep(int(trailers.get("retry-after-ms", "50")) / 1000)
            elif exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                window.timeouts += 1
            else:
                window.errors += 1
                window.first_error = window.first_error or f"{exc.code().name}: {exc.details()}"
                await asyncio.sleep(0.05)


async def drive(address: str, plan: dict[str, tuple[int, tuple, pb.InvokeRequest]], flood: set[str],
                segments: list[Segment], start_wall: float, period: dict[str, float],
                hostile: bool = False) -> tuple[dict, list]:
    channels = {t: grpc.aio.insecure_channel(address) for t in plan}
    for channel in channels.values():
        await channel.channel_ready()
    start = time.perf_counter() + (start_wall - time.time())  # the same instant in every worker process
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    stats = {kind: {t: Stats() for t in plan} for kind in {s.kind for s in segments}}
    tasks = []
    for tenant, (callers, metadata, request) in plan.items():
        stub = solo_pb2_grpc.GatewayStub(channels[tenant])
        mine = {kind: by_tenant[tenant] for kind, by_tenant in stats.items()}
        tasks += [caller(stub, request, metadata, mine, segments, start, period[tenant], tenant in flood,
                         hostile)
                  for _ in range(callers)]
    lags: list[tuple[float, float]] = []
    tasks.append(loop_lag(lags, start + segments[-1].end))
    await asyncio.gather(*tasks)
    for channel in channels.values():
        await channel.close()
    # perf_counter is per process: hand wall-clock times back so workers line up
    offset = time.time() - time.perf_counter()
    for by_tenant in stats.values():
        for s in by_tenant.values():
            s.at = [t + offset for t in s.at]
            s.shed_at = [t + offset for t in s.shed_at]
    return stats, [(t + offset, late) for t, late in lags]


def _worker(address: str, plan: dict, flood: set[str], segments: list[Segment], start_wall: float, period: dict,
            hostile: bool, conn) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    stats, lags = asyncio.run(drive(address, plan, flood, segments, start_wall, period, hostile))
    conn.send(({kind: {t: vars(s) for t, s in by_tenant.items()} for kind, by_tenant in stats.items()}, lags))
    conn.close()


def run_load(address: str, plan: dict, segments: list[Segment], workers: int, period: dict[str, float],
             flood: set[str] = frozenset(), start_wall: float | None = None,
             hostile: bool = False) -> tuple[dict, list]:
    """Split every tenant's callers over `workers` processes that start at the same instant (`start_wall`,
    default in 3 s); the tenants in `flood` call only in loaded segments. Returns the merged stats per kind
    of segment and tenant, and the workers' own event-loop stalls: (wall clock, seconds late, worker), oldest
    first."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    start_wall = start_wall or time.time() + 3.0  # time for the workers to start and connect
    procs, pipes = [], []
    for i in range(workers):
        part = {t: (n // workers + (i < n % workers), md, req) for t, (n, md, req) in plan.items()}
        part = {t: v for t, v in part.items() if v[0]}
        if not part:
            continue
        here, there = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, daemon=True,
                           args=(address, part, set(flood), segments, start_wall, period, hostile, there))
        proc.start()
        procs.append(proc)
        pipes.append(here)
    merged = {kind: {t: Stats() for t in plan} for kind in {s.kind for s in segments}}
    lags = []
    for worker, (here, proc) in enumerate(zip(pipes, procs)):
        stats, worker_lags = here.recv()
        lags += [(t, late, worker) for t, late in worker_lags]
        for kind, by_tenant in stats.items():
            for tenant, s in by_tenant.items():
                m = merged[kind][tenant]
                m.ok += s["ok"]
                m.at += s["at"]
                m.shed_at += s["shed_at"]
                m.shed += s["shed"]
                m.timeouts += s["timeouts"]
                m.errors += s["errors"]
                m.first_error = m.first_error or s["first_error"]
        proc.join(10)
    return merged, sorted(lags)


class CpuSampler:
    """--timeline: every `every` seconds, the CPU each process on the machine used (to find who ran in a stall)."""

    def __init__(self, every: float = 0.1):
        import threading
        self.every, self.samples = every, []  # (wall clock at the end, {pid: cores})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        before, t0 = C.proc_table(), time.time()
        while not self._stop.wait(self.every):
            now, t1 = C.proc_table(), time.time()
            used = {pid: (v[1] - before[pid][1]) / C.CLK_TCK / (t1 - t0) for pid, v in now.items() if pid in before}
            self.samples.append((t1, {pid: c for pid, c in used.items() if c > 0.05}))
            before, t0 = now, t1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def busiest(self, start: float, end: float, top: int = 5) -> str:
        total: dict[int, float] = {}
        rows = [u for t, u in self.samples if start < t <= end + self.every]
        for used in rows:
            for pid, cores in used.items():
                total[pid] = total.get(pid, 0.0) + cores / max(1, len(rows))
        names: dict[str, float] = {}
        for pid, cores in total.items():
            name = C.process_name(pid)
            names[name] = names.get(name, 0.0) + cores
        return ", ".join(f"{n} {c:.2f}" for n, c in sorted(names.items(), key=lambda kv: -kv[1])[:top])


def stall_summary(lags: list) -> str:
    """The load generator's own event-loop stalls in a phase: how many, how long at most."""
    return f"{len(lags)} (longest {max(late for _, late, _ in lags) * 1e3:.0f} ms)" if lags else "0"


def timeline(stats: dict[str, Stats], lags: list, bucket: float = 0.25, top: int = 8, cpu=None) -> str:
    """The slowest buckets of the well-behaved calls (by finish time), with the generator's own stalls in them."""
    buckets: dict[int, list[float]] = {}
    for t, s in stats.items():
        if t == NOISY:
            continue
        for at, latency in zip(s.at, s.ok):
            buckets.setdefault(int(at / bucket), []).append(latency)
    if not buckets:
        return "  (no calls)"
    first = min(buckets)
    rows = []
    for b, values in sorted(buckets.items(), key=lambda kv: -max(kv[1]))[:top]:
        values.sort()
        stalls = [(late, w) for t, late, w in lags if b * bucket - 0.5 <= t < (b + 1) * bucket]
        rows.append(f"  t={(b - first) * bucket:5.2f}s calls={len(values):4d} p99={C.percentile(values, 99) * 1e3:6.1f} ms "
                    f"max={values[-1] * 1e3:6.1f} ms >30ms={sum(v > 0.03 for v in values):4d}  generator stalls: "
                    + (", ".join(f"w{w} {late * 1e3:.0f} ms" for late, w in stalls[:6]) or "none")
                    + (f"\n      CPU (cores): {cpu.busiest(b * bucket, (b + 1) * bucket)}" if cpu else ""))
    series = [f"  buckets from wall clock {first * bucket:.3f}", "  every bucket in order (well-behaved p99 ms / noisy admitted / noisy shed / generator stall ms):"]
    noisy = stats.get(NOISY)
    for b in range(first, max(buckets) + 1):
        if b not in buckets:  # (between loaded segments)
            continue
        values = sorted(buckets[b])
        lo, hi = b * bucket, (b + 1) * bucket
        n_ok = sum(lo <= t < hi for t in noisy.at) if noisy else 0
        n_shed = sum(lo <= t < hi for t in noisy.shed_at) if noisy else 0
        stall = max((late for t, late, _ in lags if lo <= t < hi), default=0.0)
        series.append(f"    {(b - first) * bucket:5.2f}s {C.percentile(values, 99) * 1e3:6.1f} {n_ok:4d} {n_shed:4d} "
                      f"{stall * 1e3:4.0f}")
    return "\n".join(rows + series)


def print_timeline(label: str, loaded: dict[str, Stats], stalls: list, sampler: CpuSampler, data_dir: Path) -> None:
    """--timeline: the loaded phase bucket by bucket, and why calls were shed (the calls.shed events)."""
    from solo.events import read_events
    print(f"slowest 0.25 s buckets, loaded ({label}):\n{timeline(loaded, stalls, cpu=sampler)}", flush=True)
    shed: dict[str, int] = {}
    for row in read_events(data_dir, type="calls.shed").to_pylist():
        for key, n in json.loads(row["payload"])["counts"].items():
            shed[f"{row['tenant']} {key}"] = shed.get(f"{row['tenant']} {key}", 0) + n
    print("calls.shed events (all phases):", shed, flush=True)


def gateway_histogram(port: int) -> dict[float, float]:
    """The well-behaved tenants' Invoke latencies as the gateway measured them (handler start to answer, so
    the host round trip without the client's or the transport's share): cumulative count per bucket bound."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "solo_gateway_call_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("tenant") in WELL:
                le = float(sample.labels["le"])
                counts[le] = counts.get(le, 0.0) + sample.value
    return counts


class GatewayScraper:
    """Scrapes the gateway's histogram at the edges of every measured window (a thread, on the wall clock of
    the run's start) and adds up, per kind of segment, the calls counted inside them."""

    def __init__(self, port: int, segments: list[Segment], start_wall: float):
        import threading
        self.port, self.segments, self.start_wall = port, segments, start_wall
        self.counts: dict[str, dict[float, float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for seg in self.segments:
            time.sleep(max(0.0, self.start_wall + seg.measured - time.time()))
            try:
                before = gateway_histogram(self.port)
                time.sleep(max(0.0, self.start_wall + seg.end - time.time()))
                after = gateway_histogram(self.port)
            except OSError as exc:  # a stretch without a figure; the others still count
                print(f"  gateway metrics scrape failed ({exc}); that stretch is left out of the gateway p99")
                continue
            total = self.counts.setdefault(seg.kind, {})
            for le, n in after.items():
                total[le] = total.get(le, 0.0) + n - before.get(le, 0.0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(30)

    def p99_ms(self, kind: str) -> float:
        return histogram_p99(self.counts.get(kind, {}))


def histogram_p99(cumulative: dict[float, float]) -> float:
    """p99 in ms of the calls in a histogram (cumulative count per bucket bound), interpolated inside its
    bucket (coarse: the buckets are 2.5, 5, 10, 25 ms ...)."""
    bounds = sorted(cumulative)
    counts = [cumulative[b] for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank, lower, below = 0.99 * counts[-1], 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            upper = bound if bound != float("inf") else lower
            return (lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)) * 1e3
        lower, below = bound, count
    return float("nan")


def summarize(stats: dict[str, Stats], duration: float) -> dict:
    well = [s for t, s in stats.items() if t != NOISY]
    lat = sorted(x for s in well for x in s.ok)
    goodput = {t: len(s.ok) / duration for t, s in stats.items()}
    return {"p99_ms": C.percentile(lat, 99) * 1e3 if lat else float("nan"),
            "p50_ms": C.percentile(lat, 50) * 1e3 if lat else float("nan"),
            "goodput": goodput, "jain_well": jain([goodput[t] for t in stats if t != NOISY]),
            "tried": {t: (len(s.ok) + s.shed + s.timeouts + s.errors) / duration for t, s in stats.items()},
            "jain_all": jain(list(goodput.values())),
            "shed": {t: s.shed for t, s in stats.items()}, "timeouts": sum(s.timeouts for s in stats.values()),
            "errors": sum(s.errors for s in stats.values()),
            "first_error": next((s.first_error for s in stats.values() if s.first_error), "")}


SHARE_FRACTION = 0.4  # a well-behaved tenant sends this much of its share: a tenth of what the machine serves
PROBE_CALLERS, PROBE_SECONDS = 8, 3.0  # the capacity probe: this many callers per tenant, back to back


def probe_capacity(address: str, requests: dict, metadata: dict, workers: int) -> float:
    """Calls/s the machine serves through the gateway, with the load generator on the same cores: every
    tenant's PROBE_CALLERS callers back to back (no pause between calls) for PROBE_SECONDS after 1 s."""
    plan = {t: (PROBE_CALLERS, metadata[t], requests[t]) for t in TENANTS}
    stats, _ = run_load(address, plan, [Segment("probe", 0.0, 1.0, 1.0 + PROBE_SECONDS)], workers,
                        {t: 0.0 for t in TENANTS})
    return sum(len(s.ok) for s in stats["probe"].values()) / PROBE_SECONDS


def set_rates(args, capacity: float | None) -> None:
    """--rate / --noisy-rate where not given: from the probed capacity, a tenant's share is a tenth of it;
    the well-behaved tenants send SHARE_FRACTION of their share and the noisy one 10x its share."""
    share = capacity / len(TENANTS) if capacity else None
    if args.rate is None:
        args.rate = round(SHARE_FRACTION * share)
    if args.noisy_rate is None:
        args.noisy_rate = round(10 * share) if share else round(10 * args.rate / SHARE_FRACTION)
    args.capacity = capacity


def periods(args) -> dict[str, float]:
    """Seconds between one caller's calls: a well-behaved tenant sends --rate calls/s, the noisy one --noisy-rate."""
    return {t: (args.callers * 10 / args.noisy_rate if t == NOISY else args.callers / args.rate) for t in TENANTS}


def plan_for(callers_well: int, callers_noisy: int, requests: dict, metadata: dict) -> dict:
    plan = {t: (callers_well, metadata[t], requests[t]) for t in WELL}
    if callers_noisy:
        plan[NOISY] = (callers_noisy, metadata[NOISY], requests[NOISY])
    return plan


@contextlib.contextmanager
def solo_with_tenants(work: Path, adaptive: bool):
    """A fresh Solo (`solo up --foreground`, a data folder of its own) with the bench's limits and every
    tenant's service deployed: yields it, its metrics port, and each tenant's call metadata and request."""
    from solo.client import SoloClient

    work = Path(tempfile.mkdtemp(prefix="solo-", dir=work))
    config = work / "load.toml"
    metrics_port = C.free_port()
    config.write_text(f"[gateway]\nmetrics_port = {metrics_port}\n" + CONFIG
                      + f"adaptive_in_flight = {str(adaptive).lower()}\n")
    solo = C.SoloProcess(work, str(config))
    try:
        solo.start()
        metadata, requests = {}, {}
        with SoloClient(solo.address, solo.token) as operator:
            for tenant in TENANTS:
                token = operator.mint_token(tenant)
                with SoloClient(solo.address, token) as client:
                    client.deploy(WORK, "work", max_concurrency=32)
                metadata[tenant] = (("authorization", f"Bearer {token}"),)
                requests[tenant] = pb.InvokeRequest(service="work", method="work", json="[]")
        # after the deploys Solo refills its warm pool of hosts (new Ray workers): let that finish before
        # anything is measured, or it runs inside the probe or the first unloaded stretch
        t0 = time.monotonic()
        settled = C.wait_quiet(20.0, measure="box_cpu")
        print(f"  deployed; the box settled to {settled:.2f} cores in {time.monotonic() - t0:.0f} s", flush=True)
        yield solo, metrics_port, metadata, requests
    finally:
        solo.stop()


def calibrate(work: Path, args) -> None:
    """Sets --rate / --noisy-rate where not given, from a capacity probe of a Solo of its own (so the probe's
    saturation leaves nothing in the measured Solo's admission state)."""
    if args.rate is not None and args.noisy_rate is not None:
        return
    capacity = None
    if args.rate is None:
        with solo_with_tenants(work, adaptive=True) as (solo, _, metadata, requests):
            capacity = probe_capacity(solo.address, requests, metadata, args.workers)
    set_rates(args, capacity)
    print((f"capacity probe: {capacity:,.0f} calls/s; " if capacity else "--rate given, no probe; ")
          + f"well-behaved tenants send {args.rate:g} calls/s each, the noisy one {args.noisy_rate:,.0f} calls/s",
          flush=True)


def phases(run: tuple[dict, list], segments: list[Segment], start_wall: float) -> dict:
    """The unloaded and loaded figures of one run, and the generator's stalls inside each."""
    stats, lags = run
    quiet = {t: v for t, v in stats["unloaded"].items() if t != NOISY}  # (the noisy tenant is silent there)
    leaked = stats["unloaded"].get(NOISY, Stats())  # ...but for calls it sent before a flood ended
    out = {"unloaded": summarize(quiet, measured_seconds(segments, "unloaded")),
           "loaded": summarize(stats["loaded"], measured_seconds(segments, "loaded"))}
    stalls = {kind: [lag for lag in lags if kind_at(segments, lag[0] - start_wall) == kind] for kind in out}
    out["stalls"] = f"{stall_summary(stalls['unloaded'])} / {stall_summary(stalls['loaded'])}"
    out["noisy_in_quiet"] = len(leaked.ok) + leaked.shed + leaked.timeouts + leaked.errors
    out["stretches"] = []  # (kind, the well-behaved calls' p99 in ms) per measured stretch, in order
    for seg in segments:
        lo, hi = start_wall + seg.measured, start_wall + seg.end
        lat = sorted(x for t, st in stats[seg.kind].items() if t != NOISY for at, x in zip(st.at, st.ok) if lo <= at < hi)
        out["stretches"].append((seg.kind, C.percentile(lat, 99) * 1e3 if lat else float("nan")))
    return out


def bench_solo(work: Path, args, adaptive: bool, hostile: bool | None = None) -> dict:
    """One Solo run; `hostile`: the noisy tenant's callers ignore the retry-after (default: the flag)."""
    from solo.client import SoloClient

    hostile = args.noisy_ignores_retry_after if hostile is None else hostile
    segments = alternating(args.rounds, args.duration)
    with solo_with_tenants(work, adaptive) as (solo, metrics_port, metadata, requests):
        start_wall = time.time() + 3.0  # time for the workers to start and connect
        with (CpuSampler() if args.timeline else contextlib.nullcontext()) as sampler, \
                GatewayScraper(metrics_port, segments, start_wall) as scraper:
            run = run_load(solo.address, plan_for(args.callers, args.callers * 10, requests, metadata), segments,
                           args.workers, periods(args), flood={NOISY}, start_wall=start_wall, hostile=hostile)
        if args.timeline:
            print_timeline(f"adaptive={adaptive}", run[0]["loaded"], run[1], sampler, solo.data_dir)
        with SoloClient(solo.address, solo.token, timeout=10) as operator:
            alive = operator.whoami()["tenant"] == "default"
        return {**phases(run, segments, start_wall), "alive": alive,
                "gateway_p99_ms": (scraper.p99_ms("unloaded"), scraper.p99_ms("loaded"))}


class ServeWork:
    async def Invoke(self, request: bytes):
        from solo._proto import solo_pb2
        await asyncio.sleep(0.002)
        return solo_pb2.InvokeResponse(json="1")


def bench_serve(args) -> dict:
    with C.local_ray():
        from ray import serve
        from ray.serve.config import HTTPOptions, gRPCOptions
        port = C.free_port()
        try:
            serve.start(http_options=HTTPOptions(host="127.0.0.1", port=C.free_port()),
                        grpc_options=gRPCOptions(port=port, grpc_servicer_functions=[SERVE_SERVICER]))
            deployment = serve.deployment(ServeWork, name="work", num_replicas=1, max_ongoing_requests=32,
                                          max_queued_requests=128, logging_config={"enable_access_log": False})
            serve.run(deployment.bind(), name="work", route_prefix="/work")
            metadata = {t: (("application", "work"),) for t in TENANTS}
            requests = {t: pb.InvokeRequest(service="work", method="work", json="[]") for t in TENANTS}
            address = f"127.0.0.1:{port}"
            segments = alternating(args.rounds, args.duration)
            start_wall = time.time() + 3.0
            run = run_load(address, plan_for(args.callers, args.callers * 10, requests, metadata), segments,
                           args.workers, periods(args), flood={NOISY}, start_wall=start_wall,
                           hostile=args.noisy_ignores_retry_after)
            return phases(run, segments, start_wall)
        finally:
            serve.shutdown()


def sizing(args) -> str:
    if not args.capacity:
        return "--rate given (no capacity probe)"
    share = args.capacity / len(TENANTS)
    return (f"capacity probe {args.capacity:,.0f} calls/s (every tenant's {PROBE_CALLERS} callers back to back for "
            f"{PROBE_SECONDS:g} s, generator on the same cores), so a tenant's share is {share:,.0f} calls/s: the "
            f"well-behaved send {args.rate / share:.2g} of it, the noisy one {args.noisy_rate / share:.2g}x")


def spread(r: dict) -> float:
    """The unloaded stretches' slowest p99 over their fastest: how much the baseline moved within the run,
    from the box's own drift or from what a flood left behind (context, not a verdict)."""
    quiet = [p99 for kind, p99 in r["stretches"] if kind == "unloaded" and p99 == p99]
    return max(quiet) / min(quiet) if quiet else float("nan")


def first_quiet(r: dict) -> float:
    """The p99 of the first unloaded stretch: before any flood, so nothing a flood left behind is in it."""
    return next(p99 for kind, p99 in r["stretches"] if kind == "unloaded")


def stretch_lines(res: dict) -> str:
    """The well-behaved p99 of every measured stretch, in order (U unloaded, L loaded): where a ratio came from."""
    lines = [f"- {system}: " + ", ".join(f"{kind[0].upper()} {p99:.1f}" for kind, p99 in r["stretches"])
             + f" (noisy calls answered inside unloaded stretches: {r['noisy_in_quiet']})"
             for system, r in res.items()]
    return "The well-behaved calls' p99 in each measured stretch, in order (ms; U unloaded, L loaded):\n\n" + \
        "\n".join(lines)


def report(res: dict, info: dict, args) -> str:
    rows, checks = [], []
    for system, r in res.items():
        u, lo = r["unloaded"], r["loaded"]
        well = [lo["goodput"][t] for t in WELL]
        rows.append([system, f"{u['p99_ms']:.1f}", f"{lo['p50_ms']:.1f}", f"{lo['p99_ms']:.1f}",
                     f"{lo['p99_ms'] / u['p99_ms']:.1f}x", f"{min(well):,.0f}-{max(well):,.0f}",
                     f"{lo['goodput'][NOISY]:,.0f} ({lo['tried'][NOISY]:,.0f} tried)", f"{lo['jain_well']:.3f}",
                     f"{lo['jain_all']:.3f}",
                     f"{sum(lo['shed'].values()):,} ({lo['shed'][NOISY]:,} noisy)", lo["timeouts"], lo["errors"],
                     r["stalls"], "%.1f / %.1f" % r["gateway_p99_ms"] if "gateway_p99_ms" in r else "n/a"])
        served = min(u["goodput"][t] for t in WELL) >= 0.9 * args.rate  # else the baseline is itself overloaded
        checks += [
            [f"{system}: well-behaved admitted p99 loaded / unloaded",
             f"{lo['p99_ms'] / u['p99_ms']:.1f}x" if served else
             f"n/a: unloaded, it served {min(u['goodput'][t] for t in WELL):.0f} of {args.rate:g} calls/s",
             f"<= {TARGET_P99_X:g}x", served and lo["p99_ms"] / u["p99_ms"] <= TARGET_P99_X],
            [f"{system}: Jain's index of well-behaved goodput", f"{lo['jain_well']:.3f}", f">= {TARGET_JAIN}",
             lo["jain_well"] >= TARGET_JAIN],
        ]
    for system in ("solo", HOSTILE):
        if system in res:
            checks.append([f"{system}: loaded p99 / the first unloaded stretch's alone (before any flood; 2 s of "
                           "calls) (context)", f"{res[system]['loaded']['p99_ms'] / first_quiet(res[system]):.1f}x",
                           "-", None])
            checks.append([f"{system}: unloaded stretches' p99, slowest / fastest (the box's drift or a flood's "
                           "aftermath) (context)", f"{spread(res[system]):.1f}x", "-", None])
    checks.append(["Solo gateway answers after the load", str(res["solo"]["alive"]), "True", res["solo"]["alive"]])
    table = C.markdown_table(["system", "unloaded p99 ms", "loaded p50 ms", "loaded p99 ms", "p99 ratio",
                              "goodput per well-behaved tenant /s", "noisy goodput /s", "Jain (9 well-behaved)",
                              "Jain (all 10)", "shed calls", "timeouts", "other errors",
                              "generator stalls >= 20 ms (unloaded / loaded)",
                              "gateway-measured p99 ms (unloaded / loaded)"], rows)
    verdicts = C.markdown_table(["figure", "measured", "target", "verdict"],
                                [[n, m, t, "-" if ok is None else "met" if ok else "**MISSED**"]
                                 for n, m, t, ok in checks])
    first = res["solo"]["loaded"]["first_error"]
    return ("## Overload: fairness and shedding (bench/load.py)\n\n"
            f"Command: `{C.command_line()}`  \nMachine: {info['machine']}  \n"
            f"Load: {sizing(args)}; {len(WELL)} well-behaved tenants x {args.callers} callers sending {args.rate:g} "
            f"calls/s per tenant plus one noisy tenant x {args.callers * 10} callers trying to send "
            f"{args.noisy_rate:,.0f} calls/s "
            f"({len(WELL) * args.callers + args.callers * 10} callers in {args.workers} processes), each call 2 ms of "
            f"async work in the service, 5 s deadline; a shed call waits its retry-after"
            + (" (but the noisy tenant's callers do not: `--noisy-ignores-retry-after`, they keep their pace)"
               if args.noisy_ignores_retry_after else "") + ". Unloaded: the well-behaved "
            f"tenants alone. The phases alternate {args.rounds} times in one run of the generator (unloaded, loaded, "
            f"...), {args.duration:g} s measured of each in all: an unloaded stretch counts from 3 s after the start "
            f"(later ones 1 s after the flood stops), a loaded one from 1 s after the flood starts. Solo: "
            f"`[limits] max_in_flight = 128`, `service_queue_limit = 32`, no token rate limit, each tenant's service "
            f"at concurrency 32; "
            f"'solo' is the default adaptive limit with the fair rate cap, 'solo (fixed limit)' sets "
            f"`adaptive_in_flight = false`"
            + ("" if args.noisy_ignores_retry_after else
               f", '{HOSTILE}' is the default Solo again but the noisy tenant's callers keep their pace when shed "
               "(a client that does not cooperate; its refusals are then held until their retry-after has passed, "
               "`[limits] hold_ignored_refusals`)") + ". "
            f"Ray Serve: one deployment, `max_ongoing_requests = 32`, "
            f"`max_queued_requests = 128`, the callers grouped into the same 10 'tenants'. *Generator stalls*: times the "
            f"load generator's own event loop woke 20 ms or more late in each phase (its latencies then include "
            f"its own delay; a stall in the unloaded phase raises the baseline and flatters the ratio). "
            f"*Gateway-measured p99*: the well-behaved calls as the gateway timed them (handler start to answer: "
            f"the host round trip, without the client's and the transport's share), interpolated in the "
            f"gateway's histogram buckets (2.5/5/10/25 ms), scraped at the edges of every measured stretch. "
            f"Total run time {info['elapsed']:.0f} s.\n\n{table}\n\n{stretch_lines(res)}"
            f"\n\n{verdicts}\n"
            + (f"\nFirst other error (Solo): `{first}`\n" if first else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternations of the unloaded and the loaded phase, each a share of --duration "
                             "(default 5; 1: one unloaded stretch, then one loaded)")
    parser.add_argument("--callers", type=int, default=60, help="callers per well-behaved tenant (noisy: 10x)")
    parser.add_argument("--rate", type=float,
                        help=f"calls/s per well-behaved tenant (default: {SHARE_FRACTION:g} of its share, a tenth of "
                             "the capacity a probe of the gateway measures first)")
    parser.add_argument("--noisy-rate", type=float,
                        help="calls/s the noisy tenant tries to send (default: 10x its share, the probed capacity; "
                             f"with --rate alone, 10 x rate / {SHARE_FRACTION:g})")
    parser.add_argument("--workers", type=int, default=4, help="load-generator processes (default 4)")
    parser.add_argument("--noisy-ignores-retry-after", action="store_true",
                        help="the noisy tenant's callers keep their pace when shed instead of waiting the "
                             "retry-after (a client that does not cooperate)")
    parser.add_argument("--only", choices=["solo", "serve"], help="one system only (does not write RESULTS.md)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--timeline", action="store_true",
                        help="print the slowest 0.25 s buckets of each Solo loaded phase, with the load generator's "
                             "own event-loop stalls (to tell a server stall from a client one)")
    args = parser.parse_args()
    args.capacity = None
    started = time.monotonic()
    info = {"machine": C.machine_line(C.machine())}
    res: dict = {}
    with C.hard_deadline(HARD_LIMIT, "bench/load.py"), C.workdir("solo-bench-load-") as work:
        calibrate(work, args)
        if args.only in (None, "solo"):
            print("Solo ...", flush=True)
            res["solo"] = bench_solo(work, args, adaptive=True)
            if not args.noisy_ignores_retry_after:
                print(f"{HOSTILE} ...", flush=True)
                res[HOSTILE] = bench_solo(work, args, adaptive=True, hostile=True)
            print("Solo, fixed limit ...", flush=True)
            res["solo (fixed limit)"] = bench_solo(work, args, adaptive=False)
        if args.only in (None, "serve"):
            print("Ray Serve ...", flush=True)
            res["serve"] = bench_serve(args)
    info["elapsed"] = time.monotonic() - started
    for system, r in res.items():
        print(system, {k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "goodput"})
                       for k, v in r.items()})
    if args.only is None:
        text = report(res, info, args)
        print("\n" + text)
        if not args.no_write:
            C.write_section("load", text)
            print(f"wrote {C.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
