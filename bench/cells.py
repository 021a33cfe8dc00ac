#!/usr/bin/env python
"""What a cell costs an idle service: memory, and the time to start one, sandboxed against not.

    python bench/cells.py          # ~1 min; writes the "cells" section of bench/RESULTS.md

For each mode (`[runtime] sandbox = "bwrap"`, the default, and `"off"`, the same cell process
without bubblewrap) a fresh Solo deploys N idle echo services, then this reads /proc for every
service's host and cell processes: the cell's proportional set size (PSS: shared pages split
among the processes that map them, so N cells are not counted N times for the interpreter) and
its unique set size (USS: pages only it holds), summed over the cell's processes (bwrap's two
and Python). The host's own memory is the same in both modes and is shown for context. It also
times cell starts: a cell is started with every host (warm pool included), so the figure is what
a cold host pays on top of a Ray actor, never what a warm deploy pays (bench/deploy.py).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

ECHO = Path(__import__("solo").__file__).resolve().parent / "examples" / "echo.py"
TARGET_EXTRA_MIB = 20.0


def smaps(pid: int) -> tuple[int, int, int]:
    """(rss, pss, uss) in bytes from /proc/<pid>/smaps_rollup."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    values[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        return 0, 0, 0
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return values.get("Rss", 0), values.get("Pss", 0), uss


def cell_start_seconds(mechanism: str, runs: int) -> list[float]:
    """Time from starting a cell to its first answer, as a host does it (CellProcess.start)."""
    from solo.runtime.cell_process import CellProcess
    from solo.runtime.sandbox import CellPolicy

    async def one() -> float:
        async def refuse(op, header, body):
            raise ValueError(op)

        started = time.perf_counter()
        cell = await CellProcess.start(CellPolicy(mechanism=mechanism), refuse)
        took = time.perf_counter() - started
        cell.kill()
        return took

    return [asyncio.run(one()) for _ in range(runs)]


def measure(mechanism: str, services: int, work: Path) -> dict:
    from solo.client import SoloClient

    config = work / f"{mechanism}.toml"
    config.write_text(f'[runtime]\nsandbox = "{mechanism}"\nwarm_pool_size = 0\n')
    solo = C.SoloProcess(work / mechanism, str(config))
    (work / mechanism).mkdir(exist_ok=True)
    try:
        solo.start()
        with SoloClient(solo.address, solo.token) as client:
            names = [f"idle-{i}" for i in range(services)]
            for name in names:
                client.deploy(str(ECHO), name=name)
                assert client.call(name, "echo", "x") == "x"
            time.sleep(1.0)  # let the calls' garbage settle before reading memory
            infos = [client.get(name) for name in names]
        table = C.proc_table()
        cells, hosts = [], []
        for info in infos:
            host_pid = int(info["pid"])
            tree = sorted(C.descendants(host_pid, table) - {host_pid})
            cells.append([sum(v) for v in zip(*(smaps(p) for p in tree))] if tree else [0, 0, 0])
            hosts.append(smaps(host_pid))
        return {"mechanism": mechanism, "services": services,
                "cell_rss": statistics.median(c[0] for c in cells), "cell_pss": statistics.median(c[1] for c in cells),
                "cell_uss": statistics.median(c[2] for c in cells),
                "host_rss": statistics.median(h[0] for h in hosts), "host_pss": statistics.median(h[1] for h in hosts)}
    finally:
        solo.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=8, help="idle services per mode (default 8)")
    parser.add_argument("--starts", type=int, default=20, help="cell starts timed per mode (default 20)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    rows, starts = [], {}
    with C.hard_deadline(300, "bench/cells.py"), C.workdir("solo-bench-cells-") as work:
        for mechanism in ("bwrap", "off"):
            print(f"[{time.monotonic() - started:5.1f}s] sandbox = {mechanism}", flush=True)
            rows.append(measure(mechanism, args.services, work))
            starts[mechanism] = sorted(cell_start_seconds(mechanism, args.starts))
            print(f"  {rows[-1]}", flush=True)
    mib = 1 / (1 << 20)
    table = C.markdown_table(
        ["sandbox", "idle services", "cell PSS MiB", "cell USS MiB", "cell RSS MiB", "host PSS MiB", "host RSS MiB",
         "cell start p50 ms", "cell start p90 ms"],
        [[r["mechanism"], r["services"], f"{r['cell_pss'] * mib:.1f}", f"{r['cell_uss'] * mib:.1f}",
          f"{r['cell_rss'] * mib:.1f}", f"{r['host_pss'] * mib:.1f}", f"{r['host_rss'] * mib:.1f}",
          f"{C.percentile(starts[r['mechanism']], 0.5) * 1000:.0f}",
          f"{C.percentile(starts[r['mechanism']], 0.9) * 1000:.0f}"] for r in rows])
    sandboxed = rows[0]
    extra = sandboxed["cell_pss"] * mib
    verdict = "met" if extra <= TARGET_EXTRA_MIB else "**MISSED**"
    body = (f"## Cells: memory of an idle service and cell start (bench/cells.py)\n\n"
            f"Command: `{C.command_line()}`  \n"
            f"Machine: {C.machine_line(C.machine())}  \n"
            f"Medians over {args.services} idle echo services per mode (each answered one call), from "
            f"/proc/<pid>/smaps_rollup; cell starts timed {args.starts} times per mode. Total run time "
            f"{time.monotonic() - started:.0f} s.\n\n{table}\n\n"
            f"The cell is the memory a service costs beyond its host (before cells, the service's code ran in "
            f"the host process, so the host's own figure is what an idle service cost then): "
            f"**{extra:.1f} MiB PSS per idle sandboxed service** (target <= {TARGET_EXTRA_MIB:g} MiB: {verdict}). "
            f"USS is what would be freed if the cell ended. A cell starts with its host, so warm-pool deploys "
            f"never wait for it (bench/deploy.py).\n")
    print(body)
    if not args.no_write:
        C.write_section("cells", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
