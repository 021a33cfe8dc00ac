"""Limits Solo enforces on a service's host process (Ray's num_cpus and memory only place it).

Memory: a watchdog in the host samples its RSS every `interval` and reports a violation as soon
as it passes the service's `memory`; where the machine lets us, a cgroup (v2 `memory.max`, or v1
`memory.limit_in_bytes`) set a little higher is the hard backstop for spikes between samples.
CPU: a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`) of `num_cpus` cores where
possible; otherwise nothing enforces CPU (documented; `solo status` says which).

Processes: a pids cgroup (v2 `pids.max`, v1 `pids.max`) caps the tasks (processes and threads)
of the cell, so a fork bomb in a service stops at its own limit; without one, the
memory watchdog still counts every process of the cell.

Each host applies the limits when it loads a service, to every process of its cell
(cell_process.py), not to itself: it knows their pids and runs where the cgroup files are.
Everything here is files in /sys/fs/cgroup and /proc; no Ray.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
HEADROOM = 1.10  # the cgroup sits 10 % (plus 16 MiB) above the watchdog's line: the watchdog acts first
HEADROOM_BYTES = 16 << 20


BASE_TASKS = 256  # tasks a service may have beyond one thread per concurrent call


@dataclass(frozen=True)
class Applied:
    memory: str  # how memory is enforced: "cgroup v1 + watchdog", "watchdog", or "none"
    cpu: str     # "cgroup v1 quota", "cgroup v2 quota", or "none (Ray's num_cpus only places it)"
    tasks: str = "none"  # "cgroup v1 pids.max (N)", ...

    def describe(self) -> str:
        return f"memory: {self.memory}; cpu: {self.cpu}; processes: {self.tasks}"


def tasks_for(max_concurrency: int) -> int:
    """The task limit of a service: its threads (one per concurrent call) plus room for everything else."""
    return BASE_TASKS + max(1, max_concurrency)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _v2(root: Path) -> bool:
    return (root / "cgroup.controllers").exists()


def _group(root: Path, controller: str | None, name: str) -> Path:
    """Make (or reuse) the cgroup solo/<name> under the controller's hierarchy."""
    base = root if controller is None else root / controller
    path = base / "solo" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _join(group: Path, pids) -> None:
    for pid in ([pids] if isinstance(pids, int) else pids):
        try:
            _write(group / "cgroup.procs", str(pid))
        except ProcessLookupError:
            pass  # a process of the cell that ended meanwhile


def limit_memory(pid: int, name: str, limit_bytes: int, root: Path = CGROUP_ROOT) -> str:
    """Put `pid` in a memory cgroup a little above `limit_bytes`; returns the mechanism used."""
    hard = int(limit_bytes * HEADROOM) + HEADROOM_BYTES
    try:
        if _v2(root):
            group = _group(root, None, name)
            _write(group / "memory.max", str(hard))
            _join(group, pid)
            return "cgroup v2 memory.max + watchdog"
        if (root / "memory").is_dir():
            group = _group(root, "memory", name)
            _write(group / "memory.limit_in_bytes", str(hard))
            _join(group, pid)
            return "cgroup v1 memory.limit_in_bytes + watchdog"
    except OSError:
        pass  # read-only hierarchy, not root, a container without delegation: the watchdog alone
    return "watchdog"


def limit_cpu(pid: int, name: str, cpus: float, root: Path = CGROUP_ROOT) -> str:
    quota = max(1000, int(cpus * PERIOD_US))
    try:
        if _v2(root):
            group = _group(root, None, name)
            _write(group / "cpu.max", f"{quota} {PERIOD_US}")
            _join(group, pid)
            return "cgroup v2 cpu.max"
        if (root / "cpu").is_dir():
            group = _group(root, "cpu", name)
            _write(group / "cpu.cfs_period_us", str(PERIOD_US))
            _write(group / "cpu.cfs_quota_us", str(quota))
            _join(group, pid)
            return "cgroup v1 cpu.cfs_quota_us"
    except OSError:
        pass
    return "none (no writable cgroup: Ray's num_cpus only places it)"


def limit_tasks(pid, name: str, max_tasks: int, root: Path = CGROUP_ROOT) -> str:
    """Put the processes in a pids cgroup of at most `max_tasks` tasks; returns the mechanism used."""
    try:
        if _v2(root):
            group = _group(root, None, name)
            _write(group / "pids.max", str(max_tasks))
            _join(group, pid)
            return f"cgroup v2 pids.max ({max_tasks})"
        if (root / "pids").is_dir():
            group = _group(root, "pids", name)
            _write(group / "pids.max", str(max_tasks))
            _join(group, pid)
            return f"cgroup v1 pids.max ({max_tasks})"
    except OSError:
        pass
    return "none (no writable pids cgroup; the memory watchdog counts every process of the cell)"


def apply(pid, name: str, memory_bytes: int, cpus: float, root: Path = CGROUP_ROOT, max_tasks: int = 0) -> Applied:
    """`pid`: one pid or a list: the processes of a service's cell. The host (Solo's code, a Ray worker) is
    left out: a service that burns its CPU quota or forks to its task limit must not slow or stop the host
    that answers the registry for it, and when the memory cgroup's OOM killer acts it must end the
    service's process, never the host (whose oom_score_adj Ray raises) that would report why."""
    memory = limit_memory(pid, name, memory_bytes, root) if memory_bytes else "none (no memory asked for)"
    cpu = limit_cpu(pid, name, cpus, root) if cpus else "none (no num_cpus asked for)"
    tasks = limit_tasks(pid, name, max_tasks, root) if max_tasks else "none"
    return Applied(memory, cpu, tasks)


def sweep(root: Path = CGROUP_ROOT) -> int:
    """Remove the cgroups of hosts that are gone on this node (the kernel refuses to remove a group
    that still has a process, so live hosts are safe). Returns how many were removed."""
    removed = 0
    for base in (root, root / "memory", root / "cpu", root / "pids"):
        parent = base / "solo"
        if not parent.is_dir():
            continue
        for group in parent.iterdir():
            try:
                if group.is_dir() and not (group / "cgroup.procs").read_text().strip():
                    group.rmdir()
                    removed += 1
            except OSError:
                pass
    return removed


def rss_bytes(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tree_rss_bytes(pids: list[int]) -> int:
    """Resident memory of a cell: the sum over its processes (one that ended meanwhile counts 0)."""
    total = 0
    for pid in pids:
        try:
            total += rss_bytes(pid)
        except (OSError, ValueError, IndexError):
            pass
    return total


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU time of a cell's live processes (user + system), from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, ValueError, IndexError):
            pass
    return total


__all__ = ["Applied", "apply", "limit_cpu", "limit_memory", "limit_tasks", "rss_bytes", "sweep", "tasks_for",
           "tree_cpu_seconds", "tree_rss_bytes"]
