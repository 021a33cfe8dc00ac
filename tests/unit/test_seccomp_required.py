"""A cell asked to run under the seccomp filter never starts without it: where the filter cannot be built,
building it is a clear error, not a silent None (pyseccomp made unimportable in a child interpreter)."""
from __future__ import annotations

import os
import subprocess
import sys

from solo.runtime import cell_seccomp

WITHOUT_PYSECCOMP = """
import sys
sys.modules["pyseccomp"] = None  # what a machine without pyseccomp (or libseccomp) looks like to the import
from solo.runtime import cell_seccomp
try:
    cell_seccomp.bpf_fd()
except cell_seccomp.SeccompUnavailable as exc:
    print("refused:", exc)
else:
    print("built a filter")
print("available:", cell_seccomp.available())
"""


def test_without_libseccomp_the_filter_is_refused_with_how_to_fix():
    done = subprocess.run([sys.executable, "-c", WITHOUT_PYSECCOMP], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: the cells' seccomp filter cannot be built here (ModuleNotFoundError")
    assert "[runtime] seccomp = false" in lines[0]
    assert lines[1] == "available: False"


def test_where_libseccomp_works_the_filter_is_built():
    assert cell_seccomp.unavailable_reason() == ""
    fd = cell_seccomp.bpf_fd()
    try:
        assert len(os.read(fd, 1 << 16)) > 0
    finally:
        os.close(fd)


REFUSAL_WITHOUT_PYSECCOMP = """
import sys
sys.modules["pyseccomp"] = None
from solo.config import load_config
from solo.runtime import sandbox
runtime = load_config(None).runtime
policy = sandbox.policy_from(runtime)
print("policy seccomp:", policy.seccomp)
print("refusal:", sandbox.refusal(policy))
runtime.seccomp = False
print("without:", sandbox.refusal(sandbox.policy_from(runtime)) or "none")
"""


def test_solo_up_refuses_when_the_filter_it_was_asked_for_cannot_be_built():
    """The filter was quietly left out (the policy said seccomp=False) where it could not be built."""
    done = subprocess.run([sys.executable, "-c", REFUSAL_WITHOUT_PYSECCOMP], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "policy seccomp: True"
    assert lines[1].startswith("refusal: services cannot be sandboxed as configured: the cells' seccomp filter")
    assert "[runtime] seccomp = false" in lines[1]
    assert lines[2] == "without: none"


FROM_THE_FUTURE = "io_uring_setup_from_the_future"  # a name no libseccomp knows: what io_uring_setup is to an old one


def test_a_critical_syscall_this_libseccomp_does_not_know_refuses_the_filter():
    """An old libseccomp on a newer kernel could not deny io_uring_* (whose connect op gets around the connect
    deny); the rule was dropped without a word and the cell ran with io_uring open."""
    try:
        cell_seccomp.build(denied=cell_seccomp.DENIED + (FROM_THE_FUTURE,),
                           critical=cell_seccomp.CRITICAL | {FROM_THE_FUTURE})
    except cell_seccomp.SeccompUnavailable as exc:
        assert FROM_THE_FUTURE in str(exc)
        assert "newer libseccomp" in str(exc) and "[runtime] seccomp = false" in str(exc)
    else:
        raise AssertionError("built a filter that leaves a critical syscall allowed")
    assert {"io_uring_setup", "io_uring_enter", "io_uring_register", "connect", "ptrace", "unshare", "setns",
            "mount", "bpf", "userfaultfd", "perf_event_open", "process_vm_readv", "process_vm_writev",
            "clone3"} <= cell_seccomp.CRITICAL


def test_an_unknown_ordinary_name_or_another_architectures_syscall_is_left_out():
    import pyseccomp as sc

    cell_seccomp.build(denied=cell_seccomp.DENIED + (FROM_THE_FUTURE,))  # not critical: left out, with a warning
    elsewhere = next(name for name in ("socketcall", "ipc", "arm_fadvise64_64", "umount")
                     if (cell_seccomp.syscall_number(sc, name) or -1) < 0)
    cell_seccomp.build(denied=cell_seccomp.DENIED + (elsewhere,), critical=cell_seccomp.CRITICAL | {elsewhere})
    assert cell_seccomp.syscall_number(sc, "connect") >= 0
    try:
        cell_seccomp.syscall_number(sc, FROM_THE_FUTURE)
    except LookupError:
        pass
    else:
        raise AssertionError("an unknown name resolved")


IO_URING_IN_A_FILTERED_CHILD = """
import ctypes, errno, os
from solo.runtime import cell_seccomp
cell_seccomp.build().load()
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 1, params)  # io_uring_setup (the same number on every architecture that has it)
print(fd, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()))
"""


def test_io_uring_is_denied_under_the_filter():
    done = subprocess.run([sys.executable, "-c", IO_URING_IN_A_FILTERED_CHILD], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["-1", "EPERM"]
