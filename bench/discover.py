#!/usr/bin/env python
"""A service calling another: through `solo.discover` (direct, host to host) against the same call
through the gateway (from the same service, with a tenant token).

    python bench/discover.py      # ~1 min, hard limit 300 s; writes the "discover" section of bench/RESULTS.md

A `relay` service (async) calls `kv.get` N times, at concurrency 1 and 32, either with its
`solo.discover("kv")` handle or with an `AsyncSoloClient` to the gateway. Both paths run inside
the same relay process, one after the other, so they share everything but the route. The anchor
is the same call made by the bench process straight through the gateway.
"""
from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before anything imports ray

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

HARD_LIMIT = 300
KV = '''
class Kv:
    def __init__(self):
        self.data = {"k": "v"}

    async def get(self, key):
        return self.data.get(key)
'''
RELAY = '''
import asyncio
import time

import solo


class Relay:
    def __init__(self):
        self.kv = solo.discover("kv")

    async def run(self, how, n, concurrency, address="", token=""):
        client = solo.AsyncSoloClient(address, token) if how == "gateway" else None
        call = (lambda: client.call("kv", "get", "k")) if client else (lambda: self.kv.acall("get", "k"))
        for _ in range(50):
            await call()  # warm
        latencies = []

        async def worker(count):
            for _ in range(count):
                t0 = time.perf_counter()
                await call()
                latencies.append(time.perf_counter() - t0)
        started = time.perf_counter()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        if client:
            await client.close()
        return {"latencies": latencies, "elapsed": elapsed}
'''


def stats(result: dict) -> dict:
    lat = sorted(result["latencies"])
    return {"p50_ms": C.percentile(lat, 50) * 1e3, "p99_ms": C.percentile(lat, 99) * 1e3,
            "per_s": len(lat) / result["elapsed"]}


def run(args) -> dict:
    from solo.client import SoloClient

    out: dict = {}
    with C.workdir("solo-bench-discover-") as work:
        solo = C.SoloProcess(work).start()
        try:
            with SoloClient(solo.address, solo.token) as operator:
                token = operator.mint_token("bench")
            with SoloClient(solo.address, token, timeout=300) as client:
                client.deploy(KV, "kv", max_concurrency=64)
                client.deploy(RELAY, "relay", max_concurrency=64)
                for c in (1, 32):
                    for how in ("discover", "gateway"):
                        result = client.call("relay", "run", how, args.calls, c, solo.address, token, _timeout=300)
                        out[(how, c)] = stats(result)
                        print(how, c, out[(how, c)], flush=True)
                    # anchor: the bench process itself through the gateway, sequentially or with threads
                    out[("client", c)] = client_calls(solo.address, token, args.calls, c)
                    print("client", c, out[("client", c)], flush=True)
        finally:
            solo.stop()
    return out


def client_calls(address: str, token: str, n: int, concurrency: int) -> dict:
    import asyncio

    from solo.client import AsyncSoloClient

    async def go():
        async with AsyncSoloClient(address, token) as client:
            for _ in range(50):
                await client.call("kv", "get", "k")
            latencies = []

            async def worker(count):
                for _ in range(count):
                    t0 = time.perf_counter()
                    await client.call("kv", "get", "k")
                    latencies.append(time.perf_counter() - t0)
            started = time.perf_counter()
            await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
            return {"latencies": latencies, "elapsed": time.perf_counter() - started}
    return stats(asyncio.run(go()))


def report(res: dict, info: dict, args) -> str:
    names = {"discover": "service → service, `solo.discover` (direct)",
             "gateway": "service → service, through the gateway",
             "client": "bench process → service, through the gateway (anchor)"}
    rows = [[names[how], c, f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['per_s']:,.0f}"]
            for (how, c), r in res.items()]
    d1, g1 = res[("discover", 1)], res[("gateway", 1)]
    d32, g32 = res[("discover", 32)], res[("gateway", 32)]
    return ("## Service to service: `solo.discover` against the gateway (bench/discover.py)\n\n"
            f"Command: `{C.command_line()}`  \nMachine: {info['machine']}  \n"
            f"{args.calls:,} calls of an async `kv.get` per point (after 50 warm-up calls), at concurrency 1 and 32, "
            f"made from inside an async `relay` service with its `solo.discover('kv')` handle or with an "
            f"`AsyncSoloClient` to the gateway (tenant token); the anchor makes the same calls from the bench "
            f"process. Total run time {info['elapsed']:.0f} s.\n\n"
            + C.markdown_table(["path", "concurrency", "p50 ms", "p99 ms", "calls/s"], rows)
            + f"\n\nDirect calls take {d1['p50_ms']:.3f} ms at the median against {g1['p50_ms']:.3f} ms through the "
            f"gateway ({g1['p50_ms'] / d1['p50_ms']:.1f}x), and reach {d32['per_s']:,.0f} against "
            f"{g32['per_s']:,.0f} calls/s at concurrency 32 ({d32['per_s'] / g32['per_s']:.1f}x).\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3200, help="calls per point (default 3200)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    info = {"machine": C.machine_line(C.machine())}
    with C.hard_deadline(HARD_LIMIT, "bench/discover.py"):
        res = run(args)
    info["elapsed"] = time.monotonic() - started
    text = report(res, info, args)
    print("\n" + text)
    if not args.no_write:
        C.write_section("discover", text)
        print(f"wrote {C.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
