"""Host limits on a fake cgroup tree (real files in a temp dir): v1, v2, and no cgroup at all."""
from __future__ import annotations

import os

from solo.runtime.limits import HEADROOM, HEADROOM_BYTES, apply, release, rss_bytes


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
        "memory: none (no memory asked for); cpu: none (no num_cpus asked for)"


def test_release_removes_empty_groups(tmp_path):
    (tmp_path / "memory").mkdir()
    apply(1, "gone", 1 << 20, 0, root=tmp_path)
    (tmp_path / "memory" / "solo" / "gone" / "memory.limit_in_bytes").unlink()
    (tmp_path / "memory" / "solo" / "gone" / "cgroup.procs").unlink()
    release("gone", root=tmp_path)
    assert not (tmp_path / "memory" / "solo" / "gone").exists()


def test_rss_of_this_process():
    assert rss_bytes() > 10 << 20 and abs(rss_bytes(os.getpid()) - rss_bytes()) < 50 << 20


def test_sweep_removes_only_groups_without_processes(tmp_path):
    from solo.runtime.limits import sweep
    (tmp_path / "memory").mkdir()
    apply(11, "live", 1 << 20, 0, root=tmp_path)
    apply(12, "dead", 1 << 20, 0, root=tmp_path)
    dead = tmp_path / "memory" / "solo" / "dead"
    (dead / "cgroup.procs").write_text("")
    (dead / "memory.limit_in_bytes").unlink()  # a real cgroup dir has no removable files; rmdir works
    (dead / "cgroup.procs").unlink()
    (dead / "cgroup.procs").mkdir()  # stand-in so read_text fails: the sweep must not crash
    assert sweep(root=tmp_path) == 0
    (dead / "cgroup.procs").rmdir()
    assert (tmp_path / "memory" / "solo" / "live").exists()
