#!/usr/bin/env python
"""Deploy-to-first-successful-call latency: Solo (warm pool and cold host) against Ray and Ray Serve.

    python bench/deploy.py          # ~2 min; writes the "deploy" section of bench/RESULTS.md

  solo-warm  Solo deploy of a new service when a pre-started host of the default shape is waiting
             (the registry keeps a pool of 2 and refills it in the background): N distinct services,
             one at a time, a pause between deploys so the pool refills; each is stopped after it answered
  solo-cold  Solo deploy with a non-default shape (num_cpus=0.01) so the pool cannot serve it
  ray        a fresh Ray actor: ActorClass.remote() to the first method result
  serve      Ray Serve: serve.run() of a new application to the first successful handle call

Every figure runs from the start of the deploy call to the first successful call returning
(a call that fails because the service is not ready yet is retried at once).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

ECHO = Path(__import__("solo").__file__).resolve().parent / "examples" / "echo.py"
TITLES = {"solo-warm": "Solo, warm host from the pool", "solo-cold": "Solo, cold host (num_cpus=0.01)",
          "ray": "fresh Ray actor", "serve": "Ray Serve application (serve.run)"}
TARGETS = {"solo-warm": 0.100, "solo-cold": 1.5}


def first_call(call, deadline: float = 60.0):
    """Retry `call` until it succeeds; returns its value."""
    from solo.errors import NotFound, Unavailable
    give_up = time.monotonic() + deadline
    while True:
        try:
            return call()
        except (Unavailable, NotFound):
            if time.monotonic() > give_up:
                raise
            time.sleep(0.002)


def bench_solo(args, work: Path) -> dict[str, list[dict]]:
    from solo.client import SoloClient
    source = ECHO.read_text()
    solo = C.SoloProcess(work, args.solo_config)
    results: dict[str, list[dict]] = {"solo-warm": [], "solo-cold": []}
    try:
        solo.start()
        print(f"  Solo up at {solo.address} (pid {solo.pid}); letting the warm pool fill for {args.settle:g} s",
              flush=True)
        time.sleep(args.settle)
        with SoloClient(solo.address, solo.token) as client:
            for kind, count, shape in (("solo-warm", args.n, {}), ("solo-cold", args.n_cold, {"num_cpus": 0.01})):
                for i in range(count):
                    name = f"{kind}-{i}"
                    t0 = time.perf_counter()
                    client.deploy(source, name=name, **shape)
                    t1 = time.perf_counter()
                    assert first_call(lambda name=name: client.call(name, "echo", "hi")) == "hi"
                    t2 = time.perf_counter()
                    results[kind].append({"total": t2 - t0, "deploy_rpc": t1 - t0, "first_call": t2 - t1})
                    print(f"  {kind} {i}: {1e3 * (t2 - t0):7.1f} ms (deploy RPC {1e3 * (t1 - t0):.1f} ms, "
                          f"first call {1e3 * (t2 - t1):.1f} ms)", flush=True)
                    client.stop(name, remove=True)
                    time.sleep(args.gap)
        return results
    finally:
        solo.stop()


class Echo:
    async def echo(self, message):
        return message


def bench_ray(args) -> list[dict]:
    results = []
    with C.local_ray() as ray:
        actor_cls = ray.remote(Echo).options(num_cpus=0)
        for i in range(args.n):
            t0 = time.perf_counter()
            actor = actor_cls.remote()
            assert ray.get(actor.echo.remote("hi"), timeout=60) == "hi"
            t1 = time.perf_counter()
            results.append({"total": t1 - t0})
            print(f"  ray {i}: {1e3 * (t1 - t0):7.1f} ms", flush=True)
            ray.kill(actor)
            time.sleep(args.gap_ray)
    return results


def bench_serve(args) -> list[dict]:
    results = []
    with C.local_ray():
        from ray import serve
        from ray.serve.config import HTTPOptions
        try:
            serve.start(http_options=HTTPOptions(host="127.0.0.1", port=C.free_port()))
            deployment = serve.deployment(Echo, num_replicas=1, ray_actor_options={"num_cpus": 0},
                                          logging_config={"enable_access_log": False})
            # One unmeasured application first: controller and proxy start-up are not part of a deploy.
            serve.run(deployment.options(name="warmup").bind(), name="warmup", route_prefix="/warmup")
            serve.delete("warmup")
            for i in range(args.n_serve):
                t0 = time.perf_counter()
                handle = serve.run(deployment.options(name=f"echo{i}").bind(), name=f"app{i}",
                                   route_prefix=f"/app{i}")
                assert handle.echo.remote("hi").result(timeout_s=60) == "hi"
                t1 = time.perf_counter()
                results.append({"total": t1 - t0})
                print(f"  serve {i}: {1e3 * (t1 - t0):7.1f} ms", flush=True)
                serve.delete(f"app{i}")
        finally:
            serve.shutdown()
    return results


def summary(samples: list[dict], key: str = "total") -> dict:
    values = sorted(s[key] for s in samples)
    return {"n": len(values), "p50": C.percentile(values, 50), "min": values[0] if values else float("nan"),
            "max": values[-1] if values else float("nan")}


def report(results: dict[str, list[dict]], info: dict, args) -> str:
    rows, checks = [], []
    for kind in ("solo-warm", "solo-cold", "ray", "serve"):
        if not results.get(kind):
            continue
        s = summary(results[kind])
        split = ""
        if kind.startswith("solo"):
            rpc, first = summary(results[kind], "deploy_rpc"), summary(results[kind], "first_call")
            split = f"deploy RPC p50 {1e3 * rpc['p50']:.0f} ms + first call p50 {1e3 * first['p50']:.1f} ms"
        rows.append([TITLES[kind], s["n"], f"{1e3 * s['p50']:.0f}", f"{1e3 * s['min']:.0f}", f"{1e3 * s['max']:.0f}",
                     split or "-"])
        if kind in TARGETS:
            ok = s["p50"] <= TARGETS[kind]
            checks.append([f"{TITLES[kind]} p50", f"{1e3 * s['p50']:.0f} ms (max {1e3 * s['max']:.0f} ms)",
                           f"<= {1e3 * TARGETS[kind]:.0f} ms", "met" if ok else "**MISSED**"])
    samples = "; ".join(f"{kind}: " + ", ".join(f"{1e3 * s['total']:.0f}" for s in results[kind])
                        for kind in ("solo-warm", "solo-cold", "ray", "serve") if results.get(kind))
    return (f"## Deploy to first successful call (bench/deploy.py)\n\n"
            f"Command: `{C.command_line()}`  \n"
            f"Machine: {info['machine']}  \n"
            f"Solo: `solo up --foreground` subprocess (warm pool of 2 default-shape hosts), {args.gap:g} s between "
            f"deploys so the pool refills, each service stopped after its first call; the Ray actor and Serve "
            f"anchors ran afterwards in a private local Ray (Serve's controller/proxy start-up and one warm-up "
            f"application excluded). Total run time {info['elapsed']:.0f} s. Cores used by processes outside "
            f"the benchmark meanwhile (other jobs on the machine): "
            + ", ".join(f"{k} phase {v:.2f}" for k, v in info.get("others", {}).items())
            + (" (above ~0.1: disturbed, expect higher maxima)" if max(info.get("others", {0: 0}).values()) > 0.1
               else "") + ".\n\n"
            + C.markdown_table(["system", "n", "p50 ms", "min ms", "max ms", "split"], rows)
            + "\n\n" + C.markdown_table(["figure", "measured", "target", "verdict"], checks)
            + f"\n\nEvery sample (ms, in order): {samples}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="Solo warm deploys and Ray actors (default 10)")
    parser.add_argument("--n-cold", type=int, default=5, help="Solo cold deploys (default 5)")
    parser.add_argument("--n-serve", type=int, default=5, help="Ray Serve applications (default 5)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between Solo deploys (pool refill)")
    parser.add_argument("--gap-ray", type=float, default=1.0, help="seconds between Ray actors")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after `solo up` before deploying")
    parser.add_argument("--only", nargs="+", choices=["solo", "ray", "serve"])
    parser.add_argument("--solo-config", help="a solo.toml for the Solo run")
    parser.add_argument("--quiet-wait", type=float, default=8.0,
                        help="before each system, wait up to this many seconds for other processes to go idle")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    systems = args.only or ["solo", "ray", "serve"]
    info = {"machine": C.machine_line(C.machine())}
    started = time.monotonic()
    results: dict[str, list[dict]] = {}
    with C.hard_deadline(175, "bench/deploy.py"), C.workdir("solo-bench-deploy-") as work:
        for system in systems:
            others = C.wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else 0.0
            print(f"[{time.monotonic() - started:5.1f}s] {system} (others' CPU before start: {others:.2f} cores)",
                  flush=True)
            meter = C.CpuMeter()
            meter.start()
            if system == "solo":
                results.update(bench_solo(args, work))
            elif system == "ray":
                results["ray"] = bench_ray(args)
            else:
                results["serve"] = bench_serve(args)
            info.setdefault("others", {})[system] = meter.stop()["others_cpu"]
    info["elapsed"] = time.monotonic() - started
    text = report(results, info, args)
    print("\n" + text)
    if not args.no_write and not args.only:
        C.write_section("deploy", text)
        print(f"wrote {C.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
