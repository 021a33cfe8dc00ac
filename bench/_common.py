"""Helpers shared by the benchmark scripts: ports, subprocess groups, a Solo subprocess, CPU accounting,
percentiles, machine facts and the RESULTS.md writer. Standard library + Solo only.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
CLK_TCK = os.sysconf("SC_CLK_TCK")

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


# -- processes --------------------------------------------------------------------------------------

def proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, own utime+stime ticks, ticks of its reaped children) for every live process (/proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    return table


def descendants(root: int, table: dict | None = None) -> set[int]:
    table = table if table is not None else proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class CpuMeter:
    """CPU used during a window: the whole box, this process, and processes outside our tree."""

    def _box(self) -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values[:8]) - idle, sum(values[:8])

    def _ours(self, table) -> tuple[int, int, dict[int, int]]:
        """This process's own ticks, the tree's ticks, per-pid ticks. The tree counts each process's reaped
        children too, so processes that exit inside the window (stopped hosts, killed actors) stay ours."""
        me = os.getpid()
        tree = descendants(me, table) | {me}
        ticks = {p: table[p][1] for p in tree if p in table}
        return table.get(me, (0, 0, 0))[1], sum(table[p][1] + table[p][2] for p in tree if p in table), ticks

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.box0 = self._box()
        self.self0, self.tree0, self.pids0 = self._ours(proc_table())

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        busy, total = self._box()
        self_t, tree_t, pids = self._ours(proc_table())
        box_cores = (busy - self.box0[0]) / CLK_TCK / wall
        ours = (tree_t - self.tree0) / CLK_TCK / wall
        client = (self_t - self.self0) / CLK_TCK / wall
        per_pid = sorted(((t - self.pids0.get(p, 0)) / CLK_TCK / wall, p) for p, t in pids.items()
                         if p != os.getpid())
        top = [(process_name(p), cores) for cores, p in reversed(per_pid[-4:]) if cores >= 0.02]
        return {"client_cpu": client, "server_cpu": max(0.0, ours - client), "box_cpu": box_cores,
                "others_cpu": max(0.0, box_cores - ours), "top": top}


def process_name(pid: int) -> str:
    """A short, readable name for one of our processes (Ray workers name themselves ray::Class.method)."""
    try:
        argv = open(f"/proc/{pid}/cmdline").read().split("\0")
    except OSError:
        return f"pid {pid}"
    text = " ".join(argv)
    if "solo.cli up" in text:
        return "solo gateway process (solo up)"
    if "solo.runtime.gateway_process" in text:
        return f"solo gateway process {argv[-2] if len(argv) > 2 else ''} (child)".replace("  ", " ")
    if argv[0].startswith("ray::"):
        return argv[0].split(".")[0] + " (Ray worker)"
    if "_anchor_servers.py" in text:
        kind = argv[2] if len(argv) > 2 else ""
        return {"bare": "bare grpc.aio server process", "naive": "naive gateway process (Ray driver)"}.get(kind, kind)
    for arg in argv[:2]:
        if arg and not arg.endswith(("python", "python3", "python3.11")):
            return os.path.basename(arg)
    return f"pid {pid}"


def wait_quiet(max_wait: float, threshold: float = 0.3, measure: str = "others_cpu") -> float:
    """Wait (up to max_wait s) until processes outside our tree use less than `threshold` cores;
    returns the last level seen. Other people's jobs on a 2-core box would skew every figure.
    `measure="box_cpu"` waits for the whole box instead, our own processes included."""
    deadline = time.monotonic() + max_wait
    meter = CpuMeter()
    while True:
        meter.start()
        time.sleep(1.0)
        level = meter.stop()[measure]
        if level < threshold or time.monotonic() >= deadline:
            return level


def start_group(argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})}, cwd=REPO)
    finally:
        log.close()


def stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the subprocess, wait, then SIGKILL its process group and every descendant left over
    (Ray's raylet, GCS and worker processes are descendants of the process that started Ray)."""
    tree = descendants(proc.pid) | {proc.pid}
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    tree |= descendants(proc.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_for_line(log_path: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        match = regex.search(text)
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"{proc.args} did not print {pattern!r} within {timeout}s; see {log_path}")


class SoloProcess:
    """`solo up --foreground` in its own process group, temp data dir and free port."""

    def __init__(self, workdir: Path, config: str | None = None, launcher: list[str] | None = None):
        self.config = config  # an optional solo.toml passed to `solo up --config`
        self.launcher = launcher or [sys.executable, "-m", "solo.cli"]  # e.g. bench/_solo_noauth.py
        self.data_dir = workdir / "solo-data"
        self.port = free_port()
        self.log = workdir / "solo.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> SoloProcess:
        argv = [*self.launcher, "up", "--foreground", "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--no-example"] + (["--config", str(self.config)] if self.config else [])
        # RAY_ADDRESS=local: belt and braces for older checkouts, whose `solo up` called ray.init() without
        # an address and so attached to whatever cluster /tmp/ray/ray_current_cluster named (e.g. a test's
        # cluster_utils.Cluster) instead of starting the private embedded Ray this benchmark wants.
        self.proc = start_group(argv, self.log, env={"RAY_ADDRESS": "local"})
        state = self.data_dir / "solo.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if state.exists():
                with contextlib.suppress(ValueError):
                    info = json.loads(state.read_text())
                    if info.get("pid") == self.proc.pid:
                        self.address = info["address"]
                        self.token = Path(info["operator_token_file"]).read_text().strip()
                        return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"solo up exited with {self.proc.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"Solo did not write {state} within {timeout}s; see {self.log}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM (what `solo down` sends), then kill whatever is left. Not `solo down` itself: it polls
        the pid with kill(0), which a finished-but-unreaped child of ours still answers, so it would wait 90 s."""
        if self.proc is not None:
            stop_group(self.proc, grace=30)
            self.proc = None


@contextlib.contextmanager
def workdir(prefix: str):
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)


@contextlib.contextmanager
def hard_deadline(seconds: int, what: str):
    """Bound a whole run: SIGALRM raises in the main thread so `finally` blocks still clean up."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} exceeded its time budget of {seconds}s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def local_ray(**kwargs):
    """A private local Ray for this process (never an existing cluster), shut down on exit."""
    import ray
    ray.init(address="local", include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             namespace="bench", **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


# -- reporting -------------------------------------------------------------------------------------

def machine() -> dict:
    import grpc
    import ray
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "?"
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "ray": ray.__version__,
            "grpc": grpc.__version__, "kernel": platform.release(),
            "loadavg": open("/proc/loadavg").read().split()[0]}


def solo_revision() -> str:
    """The commit Solo was measured at, and whether solo/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "solo"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if not head:
        return "unknown"
    return head + (f" + uncommitted changes in {len(dirty.splitlines())} file(s) under solo/" if dirty else "")


def machine_line(info: dict) -> str:
    return (f"{info['date']}; `nproc` = {info['nproc']} ({info['cpu']}); Python {info['python']}, "
            f"ray {info['ray']}, grpcio {info['grpc']}; Linux {info['kernel']}; 1-min load average at start "
            f"{info['loadavg']}; Solo at {solo_revision()}")


def command_line() -> str:
    argv = [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]
    return "python " + " ".join(shlex.quote(a) for a in argv)


def write_section(key: str, body: str) -> None:
    """Replace the text between `<!-- key:begin -->` and `<!-- key:end -->` in RESULTS.md (append if absent)."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by the scripts in bench/ " \
        "(see bench/README.md). Sections between the markers are regenerated on every run.\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
