"""Several gateway processes on one port (`[gateway] processes = N`): what they share.

`solo up` with N > 1 runs its own gateway (process 0) and N-1 child processes, all listening on the same
host:port with SO_REUSEPORT, so the kernel spreads incoming connections over them. Each process follows
the routes, the revocations and the root keys by itself, exactly as a single gateway does; what they
share is this module:

- `GroupFile`: `<data-dir>/gateway-group`, one 32-byte slot per process (pid, route version, the port
  of its internal metrics endpoint, ready), memory-mapped by every process. A deploy answered by one
  process waits until every live process routes with the new version (`wait_version`), so the reply
  means "callable" whichever process the client's next connection reaches.
- `claim_port`: SO_REUSEPORT lets any socket of the same user join the port. Before binding, the
  supervisor takes a per-user lock on the port number (a second Solo, whatever its data directory,
  is refused) and binds the address once without SO_REUSEPORT (anything already listening there
  is refused), so no other Solo and no earlier server silently shares the port.
- `Member`: one process's view of the group: its index, its internal `/metrics` (loopback, behind a
  token only the group knows), the merged `/metrics` (every process's series, labelled
  `gateway_process`), and `tenant_summary` summed over the processes for `GetMetrics`.

Ray-free, like the rest of solo/gateway.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import mmap
import os
import socket
import struct
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from solo import metrics
from solo.config import SoloConfig
from solo.errors import FailedPrecondition

log = logging.getLogger("solo.gateway")
GROUP_FILE = "gateway-group"
PROCESS_LABEL = "gateway_process"
_SLOT = struct.Struct("<qqqq")  # pid, route version, internal metrics port, ready (0/1)
MAX_PROCESSES = 64


@dataclass(frozen=True)
class Slot:
    index: int
    pid: int
    route_version: int
    metrics_port: int
    ready: bool


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class GroupFile:
    """The shared slots. `create` (the supervisor) makes the file; every process then `open`s it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _SLOT.size * MAX_PROCESSES)
        finally:
            os.close(fd)

    @classmethod
    def create(cls, data_dir: Path) -> GroupFile:
        path = Path(data_dir) / GROUP_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, _SLOT.size * MAX_PROCESSES)
        finally:
            os.close(fd)
        return cls(path)

    def write(self, index: int, pid: int | None = None, route_version: int | None = None,
              metrics_port: int | None = None, ready: bool | None = None) -> None:
        old = self.slot(index)
        _SLOT.pack_into(self._map, index * _SLOT.size, old.pid if pid is None else pid,
                        old.route_version if route_version is None else route_version,
                        old.metrics_port if metrics_port is None else metrics_port,
                        int(old.ready if ready is None else ready))

    def slot(self, index: int) -> Slot:
        pid, version, port, ready = _SLOT.unpack_from(self._map, index * _SLOT.size)
        return Slot(index, pid, version, port, bool(ready))

    def slots(self, count: int) -> list[Slot]:
        return [self.slot(i) for i in range(count)]

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()


# -- the port ------------------------------------------------------------------------------------------

def _lock_dir() -> Path:
    """A per-user folder every Solo of this user sees, whatever its data directory: SO_REUSEPORT only lets
    sockets of the same user share a port, so the lock needs to be no wider than the user."""
    path = Path("/tmp") / f"solo-ports-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid():
        raise FailedPrecondition(f"{path} is not a folder of this user; remove it so Solo can lock its gateway port")
    return path


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


def share(value: float, processes: int) -> float:
    """One process's share of a rate the operator set for the whole gateway."""
    return value / processes if value else value


def per_process(config: SoloConfig) -> SoloConfig:
    """The config one of N gateway processes enforces: every per-token, per-tenant and per-source rate and
    each tenant's max_concurrent_calls divided by N (calls rounded up), so the totals over the processes
    stay what the operator set. Per-process protections (max_in_flight, service_queue_limit) are not split."""
    n = config.gateway.processes
    if n <= 1:
        return config

    def rate(r):
        return r.model_copy(update={"rate_per_second": share(r.rate_per_second, n), "burst": share(r.burst, n)})

    def calls(value):
        return value if not value else max(1, math.ceil(value / n))
    lim, quotas = config.limits, config.quotas
    limits = lim.model_copy(update={
        "token_rate_per_second": share(lim.token_rate_per_second, n), "token_burst": share(lim.token_burst, n),
        "tenant_rate_per_second": share(lim.tenant_rate_per_second, n), "tenant_burst": share(lim.tenant_burst, n),
        "tenant_token_rates": {t: rate(r) for t, r in lim.tenant_token_rates.items()},
        "tenant_rates": {t: rate(r) for t, r in lim.tenant_rates.items()},
        "auth_failures_per_second": share(lim.auth_failures_per_second, n),
        "auth_failures_burst": share(lim.auth_failures_burst, n)})
    tenants = {t: q.model_copy(update={"max_concurrent_calls": calls(q.max_concurrent_calls)})
               if q.max_concurrent_calls is not None else q for t, q in quotas.tenants.items()}
    quotas = quotas.model_copy(update={"max_concurrent_calls": calls(quotas.max_concurrent_calls), "tenants": tenants})
    return config.model_copy(update={"limits": limits, "quotas": quotas})


# -- one process's view ------------------------------------------------------------------------------

class Member:
    """Process `index` of `processes`: publishes its route version, waits for the others' on deploys, and
    reads every process's metrics for /metrics and GetMetrics."""

    def __init__(self, group: GroupFile, index: int, processes: int, internal_token: str):
        self.group = group
        self.index = index
        self.processes = processes
        self.token = internal_token

    def joined(self, metrics_port: int) -> None:
        self.group.write(self.index, pid=os.getpid(), metrics_port=metrics_port, ready=False)

    def ready(self, is_ready: bool = True) -> None:
        self.group.write(self.index, ready=is_ready)

    def publish_version(self, version: int) -> None:
        self.group.write(self.index, pid=os.getpid(), route_version=version)

    def _peers(self) -> list[Slot]:
        return [s for s in self.group.slots(self.processes) if s.index != self.index and s.pid and alive(s.pid)]

    async def wait_version(self, version: int, timeout: float) -> None:
        """Until every other live process routes with at least `version` (a restarting process loads the whole
        table before it serves, so one that is not alive needs no wait)."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [s for s in self._peers() if s.route_version < version]
            if not behind:
                return
            if time.monotonic() >= deadline:
                log.warning("gateway process(es) %s did not reach route version %s within %ss",
                            [s.index for s in behind], version, timeout)
                return
            await asyncio.sleep(0.002)

    # -- metrics ---------------------------------------------------------------------------------
    def _fetch(self, slot: Slot, timeout: float = 2.0) -> list[Metric]:
        request = urllib.request.Request(f"http://127.0.0.1:{slot.metrics_port}/metrics",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - loopback, our own peer
            return list(text_string_to_metric_families(answer.read().decode()))

    def families(self) -> list[tuple[int, list]]:
        """(process index, metric families) for this process and every peer that answers."""
        out: list[tuple[int, list]] = [(self.index, list(metrics.REGISTRY.collect()))]
        for slot in self._peers():
            if not slot.metrics_port:
                continue
            try:
                out.append((slot.index, self._fetch(slot)))
            except OSError as exc:  # restarting or gone: its series are missing from this answer
                log.info("gateway process %d's metrics not read (%s)", slot.index, exc)
        return sorted(out, key=lambda item: item[0])

    def merged_metrics(self) -> bytes:
        """Every process's series in one exposition, each with a `gateway_process` label."""
        merged: dict[str, Metric] = {}
        for index, families in self.families():
            for family in families:
                if family.name.endswith("_created"):
                    continue
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                             family.unit))
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    into.add_sample(sample.name, {**sample.labels, PROCESS_LABEL: str(index)}, sample.value,
                                    sample.timestamp, sample.exemplar)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(list(merged.values())))
        return generate_latest(registry)

    def tenant_summary(self, tenant: str) -> dict[str, dict[str, float]]:
        """`metrics.tenant_summary` over every process that answers."""
        return metrics.tenant_summary(tenant, [f for _, families in self.families() for f in families])


class _Fixed:
    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self):
        return self._families


__all__ = ["GROUP_FILE", "PROCESS_LABEL", "GroupFile", "Member", "claim_port", "lock_port", "per_process"]
