"""The seccomp filter every cell runs under (on top of bubblewrap's namespaces).

Namespaces already hide the data directory, Ray, other processes and the network. The filter
takes away the kernel interfaces a service never needs and that are the usual way out of a
namespace sandbox or into other processes: tracing and cross-process memory access, mounting
and namespace changes, kernel keyrings, eBPF, perf events, userfaultfd, io_uring (which has its
own path around seccomp), module loading, kexec, reboot, clock changes, and the terminal-injection
ioctls. Each returns EPERM (a plain Python error in the service), not a kill, so a library probing
for a feature keeps working. libseccomp (through pyseccomp) compiles it to BPF; bwrap loads it.

Where the filter cannot be built (no pyseccomp, no libseccomp), `bpf_fd` raises SeccompUnavailable
rather than let a cell start without it; `unavailable_reason` says why, for `solo up` to refuse. The
same when this libseccomp is older than a syscall in `CRITICAL` (it does not know the name, so it
cannot deny it, while the kernel may well have it: io_uring's connect would pass the connect deny).
A syscall this architecture does not have is left out, as there is nothing to deny.
"""
from __future__ import annotations

import errno
import logging
import os

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr", "unshare", "setns",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl", "ioperm", "lookup_dcookie",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "vhangup", "personality", "uselib", "nfsservctl",
)
# a syscall here that this libseccomp does not know (it is older than the syscall) refuses the filter rather than
# leave it allowed: each is a way out of the cell or around the connect deny; the rest are left out with a warning
CRITICAL = frozenset({
    "connect", "sendto", "sendmsg", "sendmmsg", "socket", "ioctl", "clone", "clone3",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "unshare", "setns", "mount",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
})
log = logging.getLogger("solo.host")
_warned: set[str] = set()
_MSG_FASTOPEN = 0x20000000
_DENIED_FAMILIES = (40,)  # AF_VSOCK
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
_CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET


class SeccompUnavailable(RuntimeError):
    """The filter cannot be built on this machine; a cell asked to run under it must not start."""


HOW_TO_FIX = ("install libseccomp (e.g. apt install libseccomp2) and the pyseccomp package, or, to run cells "
              "without the filter, set [runtime] seccomp = false")


def unavailable_reason() -> str:
    """Why the filter cannot be built here ('' when it can): compiles it, so a missing or broken libseccomp
    shows, not only a missing Python package."""
    try:
        os.close(bpf_fd())
        return ""
    except SeccompUnavailable as exc:
        return str(exc)


def available() -> bool:
    return not unavailable_reason()


_NR_SCMP_ERROR = -1  # libseccomp's "no such syscall" (newer ones give a syscall absent on an arch a number < -1)


def _arches(sc) -> list[int]:
    return [getattr(sc.Arch, name) for name in dir(sc.Arch) if not name.startswith("_") and name != "NATIVE"]


def syscall_number(sc, name: str) -> int | None:
    """`name`'s number for this machine's architecture as libseccomp has it (a pseudo-number below -1 for one
    libseccomp knows but this architecture lacks: libseccomp drops or rewrites those itself); None when this
    architecture has no such syscall by an older libseccomp's per-architecture tables (known on another).
    LookupError when this libseccomp knows no syscall of that name for any architecture (it is older than it)."""
    number = sc.resolve_syscall(sc.Arch.NATIVE, name)
    if number != _NR_SCMP_ERROR:
        return number
    if any(sc.resolve_syscall(arch, name) >= 0 for arch in _arches(sc)):
        return None  # another architecture's syscall: nothing to deny here
    raise LookupError(name)


def build(denied=DENIED, critical=CRITICAL):
    """The filter as a pyseccomp SyscallFilter (default: allow): `denied` answer EPERM, plus the rules on
    arguments below. SeccompUnavailable when a syscall in `critical` is unknown to this libseccomp."""
    import pyseccomp as sc

    deny = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)

    def rule(action, name: str, *args) -> None:
        try:
            number = syscall_number(sc, name)
        except LookupError:
            if name in critical:
                raise SeccompUnavailable(
                    f"this libseccomp does not know the syscall {name}, so the cells' seccomp filter cannot deny it "
                    "(the kernel may have it, and it is a way out of the cell); install a newer libseccomp "
                    "(and pyseccomp), or, to run cells without the filter, set [runtime] seccomp = false") from None
            if name not in _warned:
                _warned.add(name)
                log.warning("the cells' seccomp filter cannot deny %s: this libseccomp does not know it", name)
            return
        if number is not None:
            f.add_rule(action, number, *args)

    for name in denied:
        rule(deny, name)
    rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
    rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _TIOCLINUX))
    # new namespaces through clone(2), one rule per CLONE_NEW* flag; clone3 passes its flags in memory, which
    # seccomp cannot read, so it answers ENOSYS and libc falls back to clone
    for flag in _CLONE_NEW_FLAGS:
        rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # every TCP socket a cell holds was made in its host's network namespace (calls, discover, egress): reconnecting
    # one (connect after AF_UNSPEC, or a TCP Fast Open send) would reach the host's network, so a cell never
    # connects by itself (egress goes through the host, egress.py) and never sends with MSG_FASTOPEN
    rule(deny, "connect")
    rule(deny, "sendto", sc.Arg(3, sc.MASKED_EQ, _MSG_FASTOPEN, _MSG_FASTOPEN))
    rule(deny, "sendmmsg", sc.Arg(3, sc.MASKED_EQ, _MSG_FASTOPEN, _MSG_FASTOPEN))
    rule(deny, "sendmsg", sc.Arg(2, sc.MASKED_EQ, _MSG_FASTOPEN, _MSG_FASTOPEN))
    for family in _DENIED_FAMILIES:  # not tied to the network namespace (vsock reaches the hypervisor)
        rule(deny, "socket", sc.Arg(0, sc.EQ, family))
    return f


def bpf_fd() -> int:
    """A readable fd (at offset 0) holding the compiled filter, for `bwrap --seccomp FD`; SeccompUnavailable
    when it cannot be built (never a cell without the filter it was asked for)."""
    try:
        compiled = build()
    except SeccompUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError from ctypes, libseccomp's own errors
        raise SeccompUnavailable(f"the cells' seccomp filter cannot be built here ({type(exc).__name__}: {exc}); "
                                 f"{HOW_TO_FIX}") from None
    fd = os.memfd_create("solo-cell-seccomp", 0)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            compiled.export_bpf(out)
    except Exception as exc:  # noqa: BLE001
        os.close(fd)
        raise SeccompUnavailable(f"the cells' seccomp filter cannot be exported ({type(exc).__name__}: {exc}); "
                                 f"{HOW_TO_FIX}") from None
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


__all__ = ["CRITICAL", "DENIED", "HOW_TO_FIX", "SeccompUnavailable", "available", "bpf_fd", "build", "syscall_number",
           "unavailable_reason"]
