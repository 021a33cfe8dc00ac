#!/usr/bin/env python
"""Hot swap under steady load: Solo's swap and automatic rollback against a Ray Serve redeploy.

    python bench/swap.py          # ~1.5 min, hard limit 400 s; writes the "swap" section of bench/RESULTS.md

Load: 10 paced callers making 50 calls/s in all (each call increments a counter and returns which
version answered), 3 s before the swap and 4 s after it. Measured per run:

- failed calls;
- *new version answering*: from the moment the swap (or redeploy) is asked for to the first answer
  from the new version;
- *longest stall*: the slowest single call during the run (the unloaded calls take ~1 ms);
- for Solo, whether the counter ends at the exact number of successful calls (state handed over).

Then Solo's automatic rollback: a version that crashes 2 s after the switch. Reported: from the
crash (the service writes the time just before it exits) to the first answer from the old version,
the registry's own figure from noticing the crash to the route switched back (the `seconds` of the
`service.rolled_back` event), and failed calls (those in flight on the crashing process, and those
sent to it before the rollback, fail: the rollback cannot save them).

Ray Serve in the same run: one deployment (max_ongoing_requests 32) behind its gRPC proxy, redeployed
with `serve.run` under the same load; its state is not handed over (the counter starts again).
"""
from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before anything imports ray

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import grpc  # noqa: E402

from solo._proto import solo_pb2 as pb  # noqa: E402
from solo._proto import solo_pb2_grpc  # noqa: E402

HARD_LIMIT = 400
RATE, CALLERS = 50.0, 10
BEFORE, AFTER = 3.0, 4.0
TARGETS = {"answer": 0.5, "stall": 0.2, "rollback": 0.5}
COUNTER = '''
import os, threading, time

class Counter:
    def __init__(self):
        self.value = 0

    def start(self):
        {start}

    def incr(self):
        self.value += 1
        return ["{tag}", self.value]

    def get(self):
        return self.value

    def snapshot(self):
        return {{"value": self.value}}

    def restore(self, state):
        self.value = state["value"]
'''
CRASH = ("threading.Thread(target=lambda: (time.sleep({delay}), open({path!r}, 'w').write(repr(time.time())), "
         "os._exit(1)), daemon=True).start()")


def counter(tag: str, start: str = "pass") -> str:
    return COUNTER.format(tag=tag, start=start)


class Calls:
    """Paced callers on one gRPC channel; every answer kept as (sent, answered, version, ok)."""

    def __init__(self, address: str, metadata: tuple, request: pb.InvokeRequest):
        self.channel = grpc.insecure_channel(address)
        self.stub = solo_pb2_grpc.GatewayStub(self.channel)
        self.metadata, self.request = metadata, request
        self.rows: list[tuple[float, float, str, bool]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CALLERS)]

    def _run(self, index: int) -> None:
        period = CALLERS / RATE
        next_at = time.time() + index * period / CALLERS
        while not self._stop.is_set():
            time.sleep(max(0.0, next_at - time.time()))
            next_at += period
            sent = time.time()
            try:
                reply = self.stub.Invoke(self.request, metadata=self.metadata, timeout=30)
                tag = json.loads(reply.json)[0]
                row = (sent, time.time(), tag, True)
            except grpc.RpcError as exc:
                row = (sent, time.time(), "", False)
                with self._lock:
                    self.errors.append(f"{exc.code().name}: {exc.details()}")
            with self._lock:
                self.rows.append(row)

    def __enter__(self) -> Calls:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(60)
        self.channel.close()


def summarize(calls: Calls, asked: float, new_tag: str) -> dict:
    rows = sorted(calls.rows)
    first_new = min((answered for _, answered, tag, ok in rows if ok and tag == new_tag), default=float("nan"))
    return {"calls": len(rows), "failed": sum(1 for r in rows if not r[3]),
            "ok": sum(1 for r in rows if r[3]), "answer_s": first_new - asked,
            "stall_s": max((answered - sent for sent, answered, _, _ in rows), default=0.0),
            "first_error": calls.errors[0] if calls.errors else ""}


def bench_solo(work: Path) -> dict:
    from solo.client import SoloClient

    solo = C.SoloProcess(work).start()
    try:
        with SoloClient(solo.address, solo.token) as client:
            client.deploy(counter("v1"), "counter", max_concurrency=4)
            metadata = (("authorization", f"Bearer {solo.token}"),)
            request = pb.InvokeRequest(service="counter", method="incr", json="[]")
            for _ in range(20):
                client.call("counter", "incr")  # warm
            warm = client.call("counter", "get")
            with Calls(solo.address, metadata, request) as calls:
                time.sleep(BEFORE)
                asked = time.time()
                swapped = client.swap("counter", counter("v2"), watch_seconds=0)
                time.sleep(AFTER)
            swap = summarize(calls, asked, "v2")
            swap["exact"] = client.call("counter", "get") == warm + swap["ok"]
            swap["switch_s"] = swapped["switch_seconds"]
            # automatic rollback: a version that crashes 2 s after the switch
            crash_file = work / "crashed-at"
            with Calls(solo.address, metadata, request) as calls:
                time.sleep(1.0)
                client.swap("counter", counter("v3", CRASH.format(delay=2.0, path=str(crash_file))),
                            watch_seconds=30)
                deadline = time.time() + 30
                while not crash_file.exists() and time.time() < deadline:
                    time.sleep(0.05)
                time.sleep(2.0)
            crashed_at = float(crash_file.read_text())
            rows = sorted(calls.rows)
            back = min((answered for sent, answered, tag, ok in rows if ok and tag == "v2" and sent > crashed_at),
                       default=float("nan"))
            event = [e for e in client.events(subject="counter", limit=10_000) if e["type"] == "service.rolled_back"]
            rollback = {"back_s": back - crashed_at, "registry_s": event[-1]["payload"]["seconds"] if event else
                        float("nan"), "failed": sum(1 for r in rows if not r[3]), "calls": len(rows),
                        "first_error": calls.errors[0] if calls.errors else ""}
        return {"swap": swap, "rollback": rollback}
    finally:
        solo.stop()


class ServeCounter:
    def __init__(self, tag: str):
        self.tag, self.value = tag, 0

    async def Invoke(self, request: bytes):
        from solo._proto import solo_pb2
        self.value += 1
        return solo_pb2.InvokeResponse(json=json.dumps([self.tag, self.value]))


def bench_serve() -> dict:
    with C.local_ray():
        from ray import serve
        from ray.serve.config import HTTPOptions, gRPCOptions
        port = C.free_port()
        try:
            serve.start(http_options=HTTPOptions(host="127.0.0.1", port=C.free_port()),
                        grpc_options=gRPCOptions(port=port,
                                                 grpc_servicer_functions=["_serve_grpc.add_InvokeServicer_to_server"]))

            def app(tag: str):
                return serve.deployment(ServeCounter, name="counter", num_replicas=1, max_ongoing_requests=32,
                                        logging_config={"enable_access_log": False}).bind(tag)
            serve.run(app("v1"), name="counter", route_prefix="/counter")
            request = pb.InvokeRequest(service="counter", method="incr", json="[]")
            with Calls(f"127.0.0.1:{port}", (("application", "counter"),), request) as calls:
                time.sleep(BEFORE)
                asked = time.time()
                serve.run(app("v2"), name="counter", route_prefix="/counter")
                time.sleep(AFTER)
            result = summarize(calls, asked, "v2")
            result["exact"] = False  # the counter starts again in the new replica
            return result
        finally:
            serve.shutdown()


def report(res: dict, info: dict) -> str:
    s, r, serve = res["solo"]["swap"], res["solo"]["rollback"], res["serve"]
    rows = [["Solo `swap`", f"{s['calls']}", f"{s['failed']}", f"{s['answer_s']:.3f}", f"{s['stall_s']:.3f}",
             "yes" if s["exact"] else "**no**"],
            ["Ray Serve redeploy", f"{serve['calls']}", f"{serve['failed']}", f"{serve['answer_s']:.3f}",
             f"{serve['stall_s']:.3f}", "no (not handed over)"]]
    checks = [["Solo: failed calls during the swap", str(s["failed"]), "0", s["failed"] == 0],
              ["Solo: new version answering after the swap call", f"{s['answer_s']:.3f} s",
               f"<= {TARGETS['answer']} s", s["answer_s"] <= TARGETS["answer"]],
              ["Solo: longest stall of a call", f"{s['stall_s']:.3f} s", f"<= {TARGETS['stall']} s",
               s["stall_s"] <= TARGETS["stall"]],
              ["Solo: counter exact after the swap", str(s["exact"]), "True", s["exact"]],
              ["Solo: rollback, crash noticed to routes back (registry)", f"{r['registry_s']:.3f} s",
               f"<= {TARGETS['rollback']} s", r["registry_s"] <= TARGETS["rollback"]]]
    table = C.markdown_table(["system", "calls", "failed", "new version answering after (s)", "longest stall (s)",
                              "state exact"], rows)
    verdicts = C.markdown_table(["figure", "measured", "target", "verdict"],
                                [[n, m, t, "met" if ok else "**MISSED**"] for n, m, t, ok in checks])
    return ("## Hot swap under load (bench/swap.py)\n\n"
            f"Command: `{C.command_line()}`  \nMachine: {info['machine']}  \n"
            f"Load: {CALLERS} paced callers, {RATE:g} calls/s in all, each call increments a counter and returns "
            f"which version answered; {BEFORE:g} s before the swap, {AFTER:g} s after. Solo: `client.swap` with "
            f"`watch_seconds=0`, state handed over by snapshot/restore; Ray Serve: `serve.run` of the new version "
            f"of the same deployment behind its gRPC proxy. Total run time {info['elapsed']:.0f} s.\n\n{table}\n\n"
            f"Solo's automatic rollback (a version that crashes 2 s after the switch, watch window 30 s): the "
            f"old version answered again {r['back_s']:.3f} s after the crash; the registry switched the routes "
            f"back {r['registry_s']:.3f} s after noticing it; {r['failed']} of {r['calls']} calls failed (those "
            f"on, or sent to, the crashed process before the rollback"
            + (f"; first: `{r['first_error']}`" if r["first_error"] else "") + ").\n\n" + verdicts + "\n"
            + (f"\nFirst Solo swap error: `{s['first_error']}`\n" if s["first_error"] else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["solo", "serve"], help="one system only (does not write RESULTS.md)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    info = {"machine": C.machine_line(C.machine())}
    res: dict = {}
    with C.hard_deadline(HARD_LIMIT, "bench/swap.py"), C.workdir("solo-bench-swap-") as work:
        if args.only in (None, "solo"):
            print("Solo ...", flush=True)
            res["solo"] = bench_solo(work)
            print(res["solo"], flush=True)
        if args.only in (None, "serve"):
            print("Ray Serve ...", flush=True)
            res["serve"] = bench_serve()
            print(res["serve"], flush=True)
    info["elapsed"] = time.monotonic() - started
    if len(res) == 2:
        text = report(res, info)
        print("\n" + text)
        if not args.no_write:
            C.write_section("swap", text)
            print(f"wrote {C.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
