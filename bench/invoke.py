#!/usr/bin/env python
"""Invoke throughput and latency: Solo's gateway against five anchors, one system at a time.

    python bench/invoke.py                     # ~2 min; writes the "invoke" section of bench/RESULTS.md
    python bench/invoke.py --only solo naive   # a subset (does not write RESULTS.md unless --write)
    python bench/invoke.py --gateway-processes 1,2,4   # also Solo with 1, 2 and 4 gateway processes at c=64

For each system and each concurrency (1 and 64), a grpc.aio load generator in this process keeps
`c` calls in flight on one channel for a warm-up second and then a measured window (5 s), and
reports completed requests/s, p50 and p99 latency. Systems (all echo a short JSON string):

  solo   Solo gateway Invoke of the example echo service (`solo up --foreground` subprocess)
  solo-noauth  the same Solo with authorization switched off (bench/_solo_noauth.py): what token checks cost
  solo-nosandbox  the same Solo with `[runtime] sandbox = "off"`: what the cell's sandbox costs on calls
  solo-hosttls  the same Solo with `[tls] hosts = "all"`: mutual TLS on the gateway-host channel, relayed by the
         host (what a gateway pays for a host on another node; here both are on loopback, so TLS is forced)
  bare   a bare grpc.aio echo server (subprocess): the floor for Python gRPC on this box
  ray    a direct Ray actor call: this process is the driver and awaits actor.echo.remote(x)
  naive  the naive gateway: grpc.aio server (subprocess, a Ray driver) awaiting one actor call per request
  serve  Ray Serve with a gRPC ingress (proxy -> replica), same wire contract

  solo-gwN  Solo with `[gateway] processes = N` (--gateway-processes), c=64 only, the load spread over
         GW_CHANNELS channels each with its own connection (one connection reaches one process)

Only one system runs at a time: each is started, measured and torn down before the next.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import grpc  # noqa: E402

from solo._proto import solo_pb2 as pb  # noqa: E402
from solo._proto import solo_pb2_grpc  # noqa: E402

ECHO = Path(__import__("solo").__file__).resolve().parent / "examples" / "echo.py"
MESSAGE = "hello, solo"
PAYLOAD = json.dumps(MESSAGE)  # a JSON string: the single argument of echo(message)
CONCURRENCY = (1, 64)
SYSTEMS = ("solo", "solo-noauth", "solo-nosandbox", "solo-hosttls", "bare", "ray", "naive", "serve")
TITLES = {"solo": "Solo gateway -> service host", "solo-noauth": "Solo, authorization off (bench/_solo_noauth.py)",
          "solo-nosandbox": "Solo, sandbox off (cells without bwrap)",
          "solo-hosttls": "Solo, mutual TLS to the host ([tls] hosts = \"all\")",
          "bare": "bare grpc.aio echo", "ray": "direct Ray actor call",
          "naive": "naive gateway (gRPC + 1 actor call/request)", "serve": "Ray Serve gRPC ingress"}
GW_CHANNELS = 16  # connections of the solo-gwN rows: the kernel spreads connections, not calls, over the processes
SERVE_SERVICER = "_serve_grpc.add_InvokeServicer_to_server"  # bench/_serve_grpc.py
TARGETS = {"naive": 2.0, "serve": 6.0, "p50_ms": 2.5, "auth_cost": 0.10, "sandbox_cost": 0.10, "sandbox_p50_ms": 1.0}


# -- load generator --------------------------------------------------------------------------------

async def run_point(make_call, concurrency: int, warmup: float, duration: float) -> dict:
    """Keep `concurrency` calls in flight; count calls that complete inside the measured window."""
    call = await make_call()
    await call()  # fail fast if the system does not answer
    latencies: list[float] = []
    errors: list[str] = []
    meter = C.CpuMeter()
    start = time.perf_counter()
    window_start, window_end = start + warmup, start + warmup + duration
    metered = asyncio.get_running_loop().create_future()

    async def meter_window():  # /proc is read in a thread so the loop is not stalled at the window edges
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        await asyncio.to_thread(meter.start)
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        metered.set_result(await asyncio.to_thread(meter.stop))

    async def worker():
        while True:
            t0 = time.perf_counter()
            if t0 >= window_end:
                return
            try:
                await call()
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                if len(errors) < 1000:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            t1 = time.perf_counter()
            if window_start <= t1 <= window_end:
                latencies.append(t1 - t0)

    meter_task = asyncio.create_task(meter_window())
    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), warmup + duration + 30)
        await meter_task
    finally:
        await close_call(call)
    latencies.sort()
    return {"c": concurrency, "rps": len(latencies) / duration, "p50_ms": C.percentile(latencies, 50) * 1e3,
            "p99_ms": C.percentile(latencies, 99) * 1e3, "n": len(latencies), "errors": len(errors),
            "first_error": errors[0] if errors else "", **metered.result()}


def grpc_caller(address: str, metadata: tuple, channels: int = 1):
    """A factory for an Invoke call on fresh grpc.aio channels (created inside the running loop); with several,
    each has its own connection and calls take them in turn."""
    async def make():
        options = [("grpc.use_local_subchannel_pool", 1)] if channels > 1 else []
        opened = [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]
        stubs = [solo_pb2_grpc.GatewayStub(c) for c in opened]
        request = pb.InvokeRequest(service="echo", method="echo", json=PAYLOAD)
        turn = iter(range(1 << 62))

        async def call():
            response = await stubs[next(turn) % channels].Invoke(request, metadata=metadata, timeout=30)
            if response.json != PAYLOAD:
                raise AssertionError(f"wrong echo: {response!r}")
        call.channels = opened
        return call
    return make


async def close_call(call) -> None:
    for channel in getattr(call, "channels", ()):
        await channel.close()


async def wait_serving(make_call, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    call = await make_call()
    try:
        while True:
            try:
                await call()
                return
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await close_call(call)


def measure(system: str, make_call, args, concurrency: tuple[int, ...] = CONCURRENCY) -> list[dict]:
    """Each concurrency point (both by default); a point disturbed by other jobs on the box is run again (budget allowing)
    and the least disturbed attempt is kept."""
    asyncio.run(wait_serving(make_call))
    rows = []
    for c in concurrency:
        attempts = []
        while True:
            row = asyncio.run(run_point(make_call, c, args.warmup, args.duration))
            row["server_us"] = row["server_cpu"] / row["rps"] * 1e6 if row["rps"] else float("nan")
            attempts.append(row)
            print(f"  {system:6s} c={c:<3d} {row['rps']:8.0f} req/s  p50 {row['p50_ms']:7.2f} ms  "
                  f"p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}  client {row['client_cpu']:.2f} cores  "
                  f"server {row['server_cpu']:.2f} cores ({row['server_us']:.0f} us/req)  box {row['box_cpu']:.2f}  "
                  f"others {row['others_cpu']:.2f}", flush=True)
            print("    serving CPU by process: " + ", ".join(f"{n} {v:.2f}" for n, v in row["top"]), flush=True)
            if row["first_error"]:
                print(f"    first error: {row['first_error']}", flush=True)
            disturbed = row["others_cpu"] > args.disturbed
            if not disturbed or len(attempts) > args.retries or time.monotonic() > args.retry_until:
                break
            print(f"    disturbed by other jobs ({row['others_cpu']:.2f} cores); running the point again", flush=True)
            C.wait_quiet(5.0)
        best = min(attempts, key=lambda r: r["others_cpu"])
        best["system"], best["tries"] = system, len(attempts)
        rows.append(best)
    return rows


# -- systems ---------------------------------------------------------------------------------------

def bench_solo(args, work: Path, system: str = "solo") -> list[dict]:
    from solo.client import SoloClient
    launcher = [sys.executable, str(Path(__file__).with_name("_solo_noauth.py"))] if system == "solo-noauth" else None
    config = args.solo_config
    processes = int(system[len("solo-gw"):]) if system.startswith("solo-gw") else 0
    if processes:  # the same Solo with N gateway processes
        config = work / f"gw{processes}.toml"
        base = Path(args.solo_config).read_text() if args.solo_config else ""
        config.write_text(base + f"\n[gateway]\nprocesses = {processes}\n" if "[gateway]" not in base
                          else base.replace("[gateway]", f"[gateway]\nprocesses = {processes}", 1))
    variant = {"solo-nosandbox": ("runtime", 'sandbox = "off"'),  # cells started without bwrap
               "solo-hosttls": ("tls", 'hosts = "all"')}.get(system)  # TLS and a relay in the host on every call
    if variant is not None:  # the same Solo with one setting changed
        section, line = variant
        config = work / f"{system}.toml"
        base = Path(args.solo_config).read_text() if args.solo_config else ""
        config.write_text(base + f"\n[{section}]\n{line}\n" if f"[{section}]" not in base
                          else base.replace(f"[{section}]", f"[{section}]\n{line}", 1))
    solo = C.SoloProcess(work, config, launcher)
    try:
        solo.start()
        print(f"  Solo up at {solo.address} (pid {solo.pid})", flush=True)
        with SoloClient(solo.address, solo.token) as client:
            client.deploy(str(ECHO), name="echo")
            assert client.call("echo", "echo", MESSAGE) == MESSAGE
        if processes:
            make = grpc_caller(solo.address, (("authorization", f"Bearer {solo.token}"),), GW_CHANNELS)
            return measure(system, make, args, (64,))
        make = grpc_caller(solo.address, (("authorization", f"Bearer {solo.token}"),))
        return measure(system, make, args)
    finally:
        solo.stop()


def title(system: str) -> str:
    if system.startswith("solo-gw"):
        n = int(system[len("solo-gw"):])
        return f"Solo, {n} gateway process{'es' if n > 1 else ''} ({GW_CHANNELS} connections)"
    return TITLES[system]


def profile_gateway(pid: int, make_call, args) -> str:
    """py-spy (with native frames) the gateway process while c=64 load runs; returns where its time goes."""
    import subprocess
    out = Path(args.profile_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "solo-gateway-c64.collapsed"
    print(f"  profiling the gateway (pid {pid}) under c=64 load -> {raw}", flush=True)
    try:
        spy = subprocess.Popen(["py-spy", "record", "-o", str(raw), "--pid", str(pid), "--duration", "5",
                                "--rate", "100", "--format", "raw", "--native", "--threads"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError:
        return "py-spy is not installed (pip install py-spy); no profile"
    try:
        row = asyncio.run(run_point(make_call, 64, 0.5, 6.0))
    finally:
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            err = b"py-spy timed out"
    if not raw.exists():
        return f"py-spy produced no profile: {err.decode(errors='replace')[-500:]}"
    summary = (f"under the profiler: {row['rps']:,.0f} req/s at c=64 (the profiler slows the gateway)\n"
               + summarize_profile(raw.read_text()))
    print(summary, flush=True)
    return summary


# (category, frame markers): the first category with a marker anywhere in a main-thread stack wins.
IDLE = "idle: event loop waiting in epoll"
CATEGORIES = [
    ("host link: sending calls to the host", ("HostLink._write_loop", "HostLink._flush", "HostLink._send")),
    ("host link: receiving results from the host", ("HostLink._read_loop", "HostLink.data_received",
                                                    "HostLink._deliver")),
    ("Invoke: authentication (security/)", ("CapabilityAuthenticator.", "TokenVerifier.", "capabilities.py")),
    ("Invoke: request id (uuid4)", ("request_id (",)),
    ("Invoke: Prometheus metrics", ("prometheus_client", "metrics.py", "values.py")),
    ("Invoke: dispatch (routes, HostLink.call, futures)", ("HostLink.call", "Dispatcher.")),
    ("Invoke: rest of handler (validation, conversion)", ("unary_wrapper", "GatewayServicer.Invoke")),
    ("gRPC poller wake-ups (recv on its notification socket)", ("sock_recv", ";recv (")),
    ("garbage collection", ("gc_collect",)),
]


def summarize_profile(text: str) -> str:
    """Main-thread samples by category, and what the other threads did (py-spy --native --threads)."""
    main: dict[str, int] = {}
    leaves: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        if thread != "MainThread":
            leaf = re.sub(r" \(.*\)$", "", frames[-1])
            leaves.setdefault(thread, {})[leaf] = leaves.setdefault(thread, {}).get(leaf, 0) + n
            continue
        joined = ";".join(frames)
        waiting = frames[-1].startswith(("epoll_wait", "epoll_pwait"))
        if waiting and ("EpollSelector.select" in joined or "uv__io_poll" in joined):  # asyncio or uvloop
            category = IDLE
        else:
            category = next((name for name, marks in CATEGORIES if any(m in joined for m in marks)),
                            "gRPC server per-RPC machinery (cygrpc + asyncio, no Solo frame)")
        main[category] = main.get(category, 0) + n
    total = sum(main.values())
    if not total:
        return "py-spy recorded no main-thread samples"
    rows = "\n".join(f"  {100 * n / total:5.1f}%  {name}" for name, n in sorted(main.items(), key=lambda kv: -kv[1]))
    others = "\n".join(
        f"  {name}: {sum(c.values())} samples, {100 * max(c.values()) / sum(c.values()):.0f}% in {max(c, key=c.get)}"
        for name, c in leaves.items())
    return (f"gateway main thread ({total} samples; 100% = the thread was on a CPU or waiting the whole time):\n"
            f"{rows}\nother threads (leaf frame they were seen in most):\n{others}")


def bench_subprocess_server(kind: str, args, work: Path) -> list[dict]:
    port = C.free_port()
    log = work / f"{kind}.log"
    proc = C.start_group([sys.executable, str(C.BENCH_DIR / "_anchor_servers.py"), kind, "--port", str(port)], log)
    try:
        C.wait_for_line(log, r"READY (\d+)", proc, 120)
        return measure(kind, grpc_caller(f"127.0.0.1:{port}", ()), args)
    finally:
        C.stop_group(proc, grace=20)


class Echo:
    async def echo(self, message):
        return message


def bench_ray(args, work: Path) -> list[dict]:
    with C.local_ray() as ray:
        actor = ray.remote(Echo).options(num_cpus=0).remote()
        assert ray.get(actor.echo.remote("warm")) == "warm"

        async def make():
            async def call():
                if await actor.echo.remote(MESSAGE) != MESSAGE:
                    raise AssertionError("wrong echo")
            return call
        return measure("ray", make, args)


class ServeEcho:
    """Ray Serve replica answering solo.v1.Gateway/Invoke (the proxy routes by gRPC method name)."""

    async def Invoke(self, request: bytes):
        from solo._proto import solo_pb2
        message = solo_pb2.InvokeRequest.FromString(request)
        return solo_pb2.InvokeResponse(json=json.dumps(json.loads(message.json)))


def bench_serve(args, work: Path) -> list[dict]:
    with C.local_ray():
        from ray import serve
        from ray.serve.config import HTTPOptions, gRPCOptions
        grpc_port = C.free_port()
        try:
            serve.start(http_options=HTTPOptions(host="127.0.0.1", port=C.free_port()),
                        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=[SERVE_SERVICER]))
            # Serve at its best: access log off and no per-replica cap below the load (default is 5).
            deployment = serve.deployment(ServeEcho, name="echo", num_replicas=1, max_ongoing_requests=256,
                                          logging_config={"enable_access_log": False})
            serve.run(deployment.bind(), name="echo", route_prefix="/echo")
            return measure("serve", grpc_caller(f"127.0.0.1:{grpc_port}", (("application", "echo"),)), args)
        finally:
            serve.shutdown()


# -- report ----------------------------------------------------------------------------------------

def ratios(rows: list[dict]) -> list[tuple[str, str, str, bool | None]]:
    by = {(r["system"], r["c"]): r for r in rows}
    out = []

    def rps(system, c):
        row = by.get((system, c))
        return row["rps"] if row else None

    solo64 = rps("solo", 64)
    for anchor, target in (("naive", TARGETS["naive"]), ("serve", TARGETS["serve"])):
        other = rps(anchor, 64)
        if solo64 and other:
            value = solo64 / other
            out.append((f"Solo c=64 req/s vs {TITLES[anchor]} c=64", f"{value:.2f}x", f">= {target:g}x",
                        value >= target))
    if ("solo", 1) in by:
        p50 = by[("solo", 1)]["p50_ms"]
        out.append(("Solo c=1 p50 latency", f"{p50:.2f} ms", f"<= {TARGETS['p50_ms']:g} ms",
                    p50 <= TARGETS["p50_ms"]))
    noauth = rps("solo-noauth", 64)
    if solo64 and noauth:
        cost = 1 - solo64 / noauth
        out.append(("cost of authorization (cached token checks): 1 - Solo / Solo without authorization, c=64 req/s",
                    f"{cost * 100:.1f} %", f"<= {TARGETS['auth_cost'] * 100:g} %", cost <= TARGETS["auth_cost"]))
        us = by[("solo", 64)]["server_us"] / by[("solo-noauth", 64)]["server_us"] - 1
        out.append(("serving CPU per call at c=64: Solo / Solo without authorization - 1 (context)",
                    f"{us * 100:+.1f} %", "-", None))
    unsandboxed = rps("solo-nosandbox", 64)
    if solo64 and unsandboxed:
        cost = 1 - solo64 / unsandboxed
        out.append(("cost of the sandbox: 1 - Solo / Solo with sandbox off, c=64 req/s", f"{cost * 100:.1f} %",
                    f"<= {TARGETS['sandbox_cost'] * 100:g} %", cost <= TARGETS["sandbox_cost"]))
    if ("solo", 1) in by:
        p50 = by[("solo", 1)]["p50_ms"]
        out.append(("Solo (sandboxed) c=1 p50 latency, the sandbox target", f"{p50:.2f} ms",
                    f"<= {TARGETS['sandbox_p50_ms']:g} ms", p50 <= TARGETS["sandbox_p50_ms"]))
    tls = rps("solo-hosttls", 64)
    if solo64 and tls:
        out.append(("cost of mutual TLS on the gateway-host channel: 1 - Solo with [tls] hosts = all / Solo, c=64 "
                    "req/s (context)", f"{(1 - tls / solo64) * 100:.1f} %", "-", None))
        if ("solo", 1) in by and ("solo-hosttls", 1) in by:
            extra = by[("solo-hosttls", 1)]["p50_ms"] - by[("solo", 1)]["p50_ms"]
            out.append(("c=1 p50 latency added by it (context)", f"{extra:+.2f} ms", "-", None))
    for anchor in ("bare", "ray"):
        other = rps(anchor, 64)
        if solo64 and other:
            out.append((f"Solo c=64 req/s vs {TITLES[anchor]} c=64 (context)", f"{solo64 / other:.2f}x", "-", None))
    if ("solo", 64) in by:
        for anchor in ("naive", "serve"):
            if (anchor, 64) in by:
                value = by[(anchor, 64)]["server_us"] / by[("solo", 64)]["server_us"]
                out.append((f"serving CPU per call at c=64: {TITLES[anchor]} / Solo (context)", f"{value:.2f}x", "-",
                            None))
    base = rps("solo-gw1", 64)
    for system in sorted({r["system"] for r in rows if r["system"].startswith("solo-gw")} - {"solo-gw1"}):
        if base and rps(system, 64):
            out.append((f"c=64 req/s: {title(system)} / 1 gateway process (context)",
                        f"{rps(system, 64) / base:.2f}x", "-", None))
    return out


def report(rows: list[dict], info: dict, args) -> str:
    table = C.markdown_table(
        ["system", "c", "req/s", "p50 ms", "p99 ms", "errors", "client CPU", "server CPU", "server CPU µs/req",
         "box CPU", "others' CPU", "tries"],
        [[title(r["system"]), r["c"], f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["errors"],
          f"{r['client_cpu']:.2f}", f"{r['server_cpu']:.2f}", f"{r['server_us']:.0f}", f"{r['box_cpu']:.2f}",
          f"{r['others_cpu']:.2f}", r["tries"]] for r in rows])
    checks = C.markdown_table(["figure", "measured", "target", "verdict"],
                              [[name, value, target, "-" if ok is None else ("met" if ok else "**MISSED**")]
                               for name, value, target, ok in ratios(rows)])
    return (f"## Invoke throughput and latency (bench/invoke.py)\n\n"
            f"Command: `{C.command_line()}`  \n"
            f"Machine: {info['machine']}  \n"
            f"Load: one grpc.aio channel from the bench process (the `ray` row: the driver awaiting "
            f"`actor.echo.remote`), {args.warmup:g} s warm-up then {args.duration:g} s measured per point, payload "
            f"`{PAYLOAD}`; one system running at a time. Total run time {info['elapsed']:.0f} s.\n\n"
            f"{table}\n\n"
            f"CPU columns are cores used during the measured window: *client* is the load generator (this "
            f"process alone), *server* every other process of this benchmark's tree (gateway, hosts, Ray, "
            f"Serve proxy/replica; for the `ray` row the driver's own Ray work counts as client), *box* all "
            f"CPUs from /proc/stat, *others'* whatever ran outside this benchmark's process tree (anything "
            f"above ~0.1 means the point was disturbed by other jobs on the machine; such a point is run again "
            f"once and the least disturbed attempt kept, *tries*). *server CPU µs/req* = "
            f"server cores / req/s: the cost of one call on the serving side, less sensitive to noise than "
            f"req/s on a 2-core box where client and server compete.\n\n"
            f"Where the serving CPU went at c=64 (cores, busiest processes of the benchmark's tree besides the "
            f"load generator):\n\n"
            + "\n".join(f"- {title(r['system'])}: " + ", ".join(f"{n} {v:.2f}" for n, v in r["top"])
                        for r in rows if r["c"] == 64)
            + f"\n\n{checks}\n" + (f"\nProfile of the Solo gateway process under c=64 load (py-spy --native --threads, "
                              f"5 s at 100 Hz; a separate Solo run):\n\n```\n{info['profile']}\n```\n"
                              if info.get("profile") else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, help="run only these systems")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per point (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point (default 1)")
    parser.add_argument("--write", action="store_true", help="write RESULTS.md even for a subset")
    parser.add_argument("--no-write", action="store_true", help="never write RESULTS.md")
    parser.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                        help="py-spy the Solo gateway under c=64 load: auto = only when a target is missed")
    parser.add_argument("--quiet-wait", type=float, default=8.0,
                        help="before each system, wait up to this many seconds for other processes to go idle")
    parser.add_argument("--disturbed", type=float, default=0.15,
                        help="a point during which other processes used more cores than this is run again")
    parser.add_argument("--retries", type=int, default=1, help="how often a disturbed point is run again")
    parser.add_argument("--solo-config", help="a solo.toml for the Solo runs (e.g. to compare gateway settings)")
    parser.add_argument("--profile-dir", default="/tmp/solo-bench-profile")
    parser.add_argument("--gateway-processes", type=lambda s: [int(n) for n in s.split(",")], default=[],
                        help="also measure Solo with these numbers of gateway processes at c=64, e.g. 1,2,4")
    args = parser.parse_args()
    systems = (args.only or list(SYSTEMS)) + [f"solo-gw{n}" for n in args.gateway_processes]
    info = {"machine": C.machine_line(C.machine())}
    started = time.monotonic()
    extra = 45 * len(args.gateway_processes)  # start, c=64 point and stop of each solo-gwN system
    args.retry_until = started + 230 + extra  # retries stop here so the whole run stays inside its budget
    rows: list[dict] = []
    with C.hard_deadline(380 + extra, "bench/invoke.py"), C.workdir("solo-bench-invoke-") as work:
        for system in systems:
            others = C.wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else 0.0
            print(f"[{time.monotonic() - started:5.1f}s] {title(system)} (others' CPU before start: {others:.2f} "
                  f"cores)", flush=True)
            if system in ("solo", "solo-noauth", "solo-nosandbox", "solo-hosttls") or system.startswith("solo-gw"):
                rows += bench_solo(args, work, system)
            elif system in ("bare", "naive"):
                rows += bench_subprocess_server(system, args, work)
            elif system == "ray":
                rows += bench_ray(args, work)
            elif system == "serve":
                rows += bench_serve(args, work)
        missed = [name for name, _, _, ok in ratios(rows) if ok is False]
        if "solo" in systems and (args.profile == "always" or (missed and args.profile == "auto")):
            why = f"missed: {', '.join(missed)}" if missed else "--profile always"
            print(f"[{time.monotonic() - started:5.1f}s] {why}; profiling Solo's gateway", flush=True)
            solo = C.SoloProcess(work, args.solo_config)
            try:
                solo.start()
                from solo.client import SoloClient
                with SoloClient(solo.address, solo.token) as client:
                    client.deploy(str(ECHO), name="echo")
                make = grpc_caller(solo.address, (("authorization", f"Bearer {solo.token}"),))
                asyncio.run(wait_serving(make))
                info["profile"] = profile_gateway(solo.pid, make, args)
            finally:
                solo.stop()
    info["elapsed"] = time.monotonic() - started
    text = report(rows, info, args)
    print("\n" + text)
    if not args.no_write and (args.write or not args.only):
        C.write_section("invoke", text)
        print(f"wrote {C.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
