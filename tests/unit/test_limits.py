"""Host limits on a fake cgroup tree (real files in a temp dir): v1, v2, and no cgroup at all."""
from __future__ import annotations

import os
import time

import pytest

from solo.runtime.limits import HEADROOM, HEADROOM_BYTES, apply, rss_bytes


def test_cgroup_v1_memory_and_cpu(tmp_path):
    for controller in ("memory", "cpu"):
        (tmp_path / controller).mkdir()
    applied = apply(4242, "solo-host-x", 256 << 20, 0.5, root=tmp_path)
    group = tmp_path / "memory" / "solo" / "solo-host-x"
    assert int((group / "memory.limit_in_bytes").read_text()) == int((256 << 20) * HEADROOM) + HEADROOM_BYTES
    assert (group / "cgroup.procs").read_text() == "4242"
    cpu = tmp_path / "cpu" / "solo" / "solo-host-x"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000" and (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert applied.memory.startswith("cgroup v1") and "watchdog" in applied.memory
    assert applied.cpu == "cgroup v1 cpu.cfs_quota_us"


def test_cgroup_v2(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory")
    applied = apply(7, "h", 100 << 20, 2, root=tmp_path)
    group = tmp_path / "solo" / "h"
    assert (group / "cpu.max").read_text() == "200000 100000" and (group / "memory.max").exists()
    assert applied.memory.startswith("cgroup v2") and applied.cpu == "cgroup v2 cpu.max"


def test_without_a_writable_cgroup_the_watchdog_is_all(tmp_path):
    (tmp_path / "memory").write_text("not a directory")  # nothing usable under this root
    applied = apply(7, "h", 100 << 20, 1, root=tmp_path)
    assert applied.memory == "watchdog" and applied.cpu.startswith("none")
    assert apply(7, "h", 0, 0, root=tmp_path).describe() == \
        "memory: none (no memory asked for); cpu: none (no num_cpus asked for); processes: none"
    assert apply(7, "h", 0, 0, root=tmp_path, max_tasks=300).tasks.startswith("none (no writable pids cgroup")


def test_pids_cgroup_v1_caps_the_tasks_of_every_process_given(tmp_path):
    (tmp_path / "pids").mkdir()
    applied = apply([7, 8, 9], "h", 0, 0, root=tmp_path, max_tasks=300)
    group = tmp_path / "pids" / "solo" / "h"
    assert applied.tasks == "cgroup v1 pids.max (300)" and (group / "pids.max").read_text() == "300"
    assert (group / "cgroup.procs").read_text() == "9"  # each pid written in turn (a real cgroup keeps them all)


def test_a_cells_process_tree_is_measured_whole():
    import subprocess
    import sys

    from solo.runtime.cell_process import descendants
    from solo.runtime.limits import tree_rss_bytes
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, time; p = subprocess.Popen(['sleep', '30']); "
                              "print(p.pid, flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        tree = descendants(child.pid)
        assert tree[0] == child.pid and grandchild in tree
        assert tree_rss_bytes(tree) > rss_bytes(child.pid) and tree_rss_bytes([2 ** 22 + 7]) == 0
    finally:
        for pid in reversed(descendants(child.pid)):
            os.kill(pid, 9)
        child.wait()


def test_rss_of_this_process():
    assert rss_bytes() > 10 << 20 and abs(rss_bytes(os.getpid()) - rss_bytes()) < 50 << 20


def test_sweep_removes_only_groups_without_processes():
    """On the machine's real cgroup hierarchy (skipped where it is not writable)."""
    import subprocess
    import uuid

    from solo.runtime.limits import CGROUP_ROOT, limit_memory, sweep
    if not os.access(CGROUP_ROOT / "memory", os.W_OK) or (CGROUP_ROOT / "cgroup.controllers").exists():
        pytest.skip("no writable cgroup v1 memory hierarchy here")
    name = f"test-sweep-{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert limit_memory(child.pid, name, 64 << 20).startswith("cgroup v1")
        group = CGROUP_ROOT / "memory" / "solo" / name
        sweep()
        assert group.exists()  # a process lives in it
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 5
    while group.exists() and time.monotonic() < deadline:
        sweep()
        time.sleep(0.05)
    assert not group.exists()
