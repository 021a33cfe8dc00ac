"""Keeping the gateway's port to this Solo when several gateway processes share it (`[gateway] processes`).

SO_REUSEPORT lets any socket of the same user join the port. Before binding, the supervisor takes a per-user
lock on the port number (`claim_port`: a second Solo, whatever its data directory, is refused) and binds the
address once without SO_REUSEPORT (anything already listening there is refused), so no other Solo and no
earlier server silently shares the port. Ray-free.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import socket
import stat
from pathlib import Path

from solo.errors import FailedPrecondition

log = logging.getLogger("solo.gateway")


def _own_folder(path: Path) -> Path:
    """`path` made (0700) if missing; FailedPrecondition unless it is a real folder of this user that no one else
    may write to (so another local user cannot pre-create it, plant a lock in it or swap it for a symlink)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise FailedPrecondition(f"{path} is not a folder of this user only; remove it so Solo can lock its "
                                 "gateway port")
    return path


def _lock_dirs() -> list[Path]:
    """Where the per-user port locks may live, best first: `~/.cache/solo/ports` (home from the password
    database, so every Solo of this user finds the same folder whatever its environment, and no other user can
    create it), then `$XDG_RUNTIME_DIR/solo-ports` (a folder of this user only), then `/tmp/solo-ports-<uid>`
    (the one another local user could squat: used only when the others cannot be made)."""
    out = []
    with contextlib.suppress(KeyError, OSError):
        home = pwd.getpwuid(os.getuid()).pw_dir
        if home and home != "/":
            out.append(Path(home) / ".cache" / "solo" / "ports")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute():
        out.append(Path(runtime) / "solo-ports")
    out.append(Path("/tmp") / f"solo-ports-{os.getuid()}")
    return out


def _lock_dir() -> Path:
    """A per-user folder every Solo of this user sees, whatever its data directory: SO_REUSEPORT only lets
    sockets of the same user share a port, so the lock needs to be no wider than the user. The first of
    `_lock_dirs` that can be made; one that exists but belongs to someone else is refused, not skipped (a
    Solo that skipped it would lock elsewhere than one that did not)."""
    candidates = _lock_dirs()
    for path in candidates[:-1]:
        try:
            return _own_folder(path)
        except FailedPrecondition:
            raise
        except OSError as exc:
            log.info("the gateway port lock cannot live in %s (%s); trying the next place", path, exc.strerror)
    return _own_folder(candidates[-1])


def lock_port(port: int, data_dir: Path) -> int:
    """Hold the per-user lock on `port` for the life of this process (an fd); FailedPrecondition naming the
    data directory of the Solo that holds it."""
    path = _lock_dir() / f"port-{port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FailedPrecondition(f"the gateway port {port} is taken by another Solo with several gateway processes "
                                 f"({holder}); stop it or pick another --port") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, data directory {data_dir}".encode(), 0)
    return fd


def probe_free(host: str, port: int) -> None:
    """Bind every address of host:port once without SO_REUSEPORT: fails when anything listens there (a
    SO_REUSEPORT bind would join it instead)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FailedPrecondition(f"the gateway cannot listen on {host}:{port} ({exc.strerror}); check --host") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise FailedPrecondition(f"the gateway cannot listen on {host}:{port}: {exc.strerror} (another "
                                         "process listens there); pick another with --port or --host") from None


def claim_port(host: str, port: int, data_dir: Path) -> int | None:
    """Before N gateway processes bind host:port with SO_REUSEPORT: the port lock, then the exclusive probe.
    Returns the lock's fd (None for port 0: the caller locks the port the kernel picked)."""
    if port == 0:
        return None
    fd = lock_port(port, data_dir)
    try:
        probe_free(host, port)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = ["claim_port", "lock_port", "probe_free"]
