"""Several gateway processes on one port (`[gateway] processes = N`): what they share.

`solo up` with N > 1 runs its own gateway (process 0) and N-1 child processes, all listening on the same
host:port with SO_REUSEPORT, so the kernel spreads incoming connections over them. Each process follows
the routes, the revocations and the root keys by itself, exactly as a single gateway does; what they
share is this module:

- `GroupFile`: `<data-dir>/gateway-group`, one 48-byte slot per process (pid, the process's start time,
  route version, the port of its internal metrics endpoint, ready, config version), memory-mapped by every
  process. A deploy answered by one
  process waits until every live process routes with the new version (`wait_version`), so the reply
  means "callable" whichever process the client's next connection reaches.
- `per_process`: each process's share of the rates and call quotas the operator set for the gateway.
  (Keeping other servers off the shared port: `port_lock.py`.)
- `Member`: one process's view of the group: its index, its internal `/metrics` and `/summary`
  (loopback, behind a token only the group knows), the merged `/metrics` (every process's series,
  labelled `gateway_process`), and `summary`, one tenant's figures summed over the processes for
  `GetMetrics`: each peer answers `/summary?tenant=` with that tenant's figures only (JSON, from its own
  registry), the sum is kept for a second and shared by concurrent callers, and at most two are
  computed at once, so a tenant calling GetMetrics in a loop cannot multiply the gateways' CPU.

Ray-free, like the rest of solo/gateway.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mmap
import os
import struct
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from solo import metrics
from solo.config import SoloConfig

log = logging.getLogger("solo.gateway")
GROUP_FILE = "gateway-group"
PROCESS_LABEL = "gateway_process"
_SLOT = struct.Struct("<qqqqqq")  # pid, its start time, route version, internal metrics port, ready (0/1),
# the config version it applied (gateway/config_rpc.py)
MAX_PROCESSES = 64
SUMMARY_TTL = 1.0  # seconds a GetMetrics sum is reused
SUMMARY_CONCURRENCY = 2  # sums computed at once by one process (each in a thread of the default pool)
_SUMMARY_CACHE_MAX = 1024


@dataclass(frozen=True)
class Slot:
    index: int
    pid: int
    started: int  # the process's start time (clock ticks after boot, /proc/<pid>/stat), 0 if unknown
    route_version: int
    metrics_port: int
    ready: bool
    config_version: int = 0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of `pid` from /proc/<pid>/stat; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def start_time(pid: int) -> int:
    """When `pid` started (clock ticks after boot), 0 if it cannot be read."""
    try:
        found = _stat(pid)
    except (OSError, ValueError, IndexError):
        return 0
    return found[1] if found else 0


def alive(pid: int, started: int = 0) -> bool:
    """The process exists, is not a zombie, and (given `started`, its start time when it took its slot) is
    the same process, not a later one that was given the same pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        found = _stat(pid)
    except (OSError, ValueError, IndexError):
        return True  # no /proc: the signal says it exists
    if found is None:
        return False
    state, since = found
    return state != "Z" and (not started or since == started)


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
              metrics_port: int | None = None, ready: bool | None = None,
              config_version: int | None = None) -> None:
        """A new `pid` also records its start time (0 for pid 0), which `alive` compares."""
        old = self.slot(index)
        started = old.started if pid is None or pid == old.pid and old.started else (start_time(pid) if pid else 0)
        _SLOT.pack_into(self._map, index * _SLOT.size, old.pid if pid is None else pid, started,
                        old.route_version if route_version is None else route_version,
                        old.metrics_port if metrics_port is None else metrics_port,
                        int(old.ready if ready is None else ready),
                        old.config_version if config_version is None else config_version)

    def slot(self, index: int) -> Slot:
        pid, started, version, port, ready, config_version = _SLOT.unpack_from(self._map, index * _SLOT.size)
        return Slot(index, pid, started, version, port, bool(ready), config_version)

    def slots(self, count: int) -> list[Slot]:
        return [self.slot(i) for i in range(count)]

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()


def share(value: float, processes: int) -> float:
    """One process's share of a rate the operator set for the whole gateway."""
    return value / processes if value else value


def burst_share(value: float, processes: int) -> float:
    """One process's share of a burst: never below one call, since a bucket that can never hold a whole
    call refuses every call (a burst of 1 over 2 processes is 1 each, 2 in all). 0 (2 s of the rate) stays 0."""
    return max(1.0, value / processes) if value else value


def calls_share(value: int, processes: int, index: int) -> int:
    """Process `index`'s share of a call quota set for the whole gateway: `value` split as evenly as whole
    calls allow (10 over 4 processes: 3, 3, 2, 2), so the shares add up to exactly `value`; but never below
    one call (a process with none would refuse every call of the tenant on the connections the kernel gives
    it), so a quota below N becomes 1 per process, N in all. 0 (unlimited) stays 0."""
    if not value:
        return value
    return max(1, value // processes + (1 if index % processes < value % processes else 0))


def per_process(config: SoloConfig, index: int = 0) -> SoloConfig:
    """The config gateway process `index` of N enforces: every per-token, per-tenant and per-source rate
    divided by N, and each tenant's max_concurrent_calls split by `calls_share`, so the totals over the
    processes stay what the operator set (a call quota below N: one call per process). Per-process
    protections (max_in_flight, service_queue_limit) are not split."""
    n = config.gateway.processes
    if n <= 1:
        return config

    def rate(r):
        return r.model_copy(update={"rate_per_second": share(r.rate_per_second, n), "burst": burst_share(r.burst, n)})

    def calls(value):
        return calls_share(value, n, index)
    lim, quotas = config.limits, config.quotas
    limits = lim.model_copy(update={
        "token_rate_per_second": share(lim.token_rate_per_second, n), "token_burst": burst_share(lim.token_burst, n),
        "tenant_rate_per_second": share(lim.tenant_rate_per_second, n), "tenant_burst": burst_share(lim.tenant_burst, n),
        "tenant_token_rates": {t: rate(r) for t, r in lim.tenant_token_rates.items()},
        "tenant_rates": {t: rate(r) for t, r in lim.tenant_rates.items()},
        "auth_failures_per_second": share(lim.auth_failures_per_second, n),
        "auth_failures_burst": burst_share(lim.auth_failures_burst, n)})
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
        self._lagging: dict[tuple[int, int, int], int] = {}  # (index, pid, started) -> version it missed
        self._summaries: dict[str, tuple[float, dict]] = {}  # tenant -> (when, sum over the processes)
        self._pending: dict[str, asyncio.Task] = {}  # tenant -> the sum being computed
        self._summary_slots: asyncio.Semaphore | None = None

    def joined(self, metrics_port: int) -> None:
        self.group.write(self.index, pid=os.getpid(), metrics_port=metrics_port, ready=False)

    def ready(self, is_ready: bool = True) -> None:
        self.group.write(self.index, ready=is_ready)

    def publish_version(self, version: int) -> None:
        self.group.write(self.index, pid=os.getpid(), route_version=version)

    def publish_config(self, version: int) -> None:
        self.group.write(self.index, pid=os.getpid(), config_version=version)

    async def wait_config(self, version: int, timeout: float, poll: float = 0.01) -> None:
        """Until every other live process has applied config `version` (a config reload); one that has not within
        `timeout` is logged and not waited for (it applies it when its long-poll returns)."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [s.index for s in self._peers() if s.config_version < version]
            if not behind:
                return
            if time.monotonic() >= deadline:
                log.warning("gateway process(es) %s did not apply config version %s within %ss", behind, version,
                            timeout)
                return
            await asyncio.sleep(poll)

    def _peers(self) -> list[Slot]:
        return [s for s in self.group.slots(self.processes)
                if s.index != self.index and s.pid and alive(s.pid, s.started)]

    async def wait_version(self, version: int, timeout: float, poll: float = 0.01) -> None:
        """Until every other live process routes with at least `version` (a restarting process loads the whole
        table before it serves, so one that is not alive needs no wait). A process that did not catch up within
        `timeout` is not waited for again until it reaches the version it missed (it is alive but stuck: every
        deploy would otherwise wait the whole `timeout`); each deploy that skips it logs so."""
        deadline = time.monotonic() + timeout
        peers = self._peers()
        for key, missed in list(self._lagging.items()):
            slot = next((s for s in peers if (s.index, s.pid, s.started) == key), None)
            if slot is None or slot.route_version >= missed:
                del self._lagging[key]  # gone (restarted: it loads the whole table), or caught up
        if self._lagging:
            log.warning("not waiting for gateway process(es) %s, still behind route version %s",
                        sorted(k[0] for k in self._lagging), min(self._lagging.values()))
        while True:
            behind = [s for s in peers if s.route_version < version and (s.index, s.pid, s.started) not in self._lagging]
            if not behind:
                return
            if time.monotonic() >= deadline:
                log.warning("gateway process(es) %s did not reach route version %s within %ss",
                            [s.index for s in behind], version, timeout)
                for s in behind:
                    self._lagging[(s.index, s.pid, s.started)] = version
                return
            await asyncio.sleep(poll)
            peers = self._peers()

    # -- metrics ---------------------------------------------------------------------------------
    def _fetch(self, slot: Slot, timeout: float = 2.0) -> list[Metric]:
        request = urllib.request.Request(f"http://127.0.0.1:{slot.metrics_port}/metrics",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - loopback, our own peer
            return list(text_string_to_metric_families(answer.read().decode()))

    def _fetch_summary(self, slot: Slot, tenant: str, timeout: float = 2.0) -> dict[str, dict[str, float]]:
        query = urllib.parse.urlencode({"tenant": tenant})
        request = urllib.request.Request(f"http://127.0.0.1:{slot.metrics_port}/summary?{query}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - loopback, our own peer
            return json.loads(answer.read())

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
        """`metrics.tenant_summary` over every process that answers: this process's from its registry, each
        peer's from its `/summary?tenant=` (that tenant's figures only, no text to parse). Blocking; computed
        every time (GetMetrics goes through `summary`)."""
        total = metrics.tenant_summary(tenant)
        for slot in self._peers():
            if not slot.metrics_port:
                continue
            try:
                theirs = self._fetch_summary(slot, tenant)
            except (OSError, ValueError) as exc:  # restarting or gone: its calls are missing from this answer
                log.info("gateway process %d's summary not read (%s)", slot.index, exc)
                continue
            for service, figures in theirs.items():
                into = total.setdefault(service, {"calls": 0, "errors": 0, "in_flight": 0,
                                                  "latency_seconds_sum": 0.0})
                for name in into:
                    into[name] += float(figures.get(name, 0))
        return total

    async def summary(self, tenant: str) -> dict[str, dict[str, float]]:
        """`tenant_summary` for GetMetrics: reused for `SUMMARY_TTL` seconds, one computation shared by the
        callers that ask for the same tenant meanwhile, and at most `SUMMARY_CONCURRENCY` computed at once (the
        others wait here, not in the thread pool that token and event calls share)."""
        loop = asyncio.get_running_loop()
        cached = self._summaries.get(tenant)
        if cached is not None and loop.time() - cached[0] < SUMMARY_TTL:
            return cached[1]
        task = self._pending.get(tenant)
        if task is None:
            task = self._pending[tenant] = asyncio.ensure_future(self._compute(tenant))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even if every caller left
        return await asyncio.shield(task)  # a caller that gives up does not cancel the others' answer

    async def _compute(self, tenant: str) -> dict[str, dict[str, float]]:
        try:
            if self._summary_slots is None:
                self._summary_slots = asyncio.Semaphore(SUMMARY_CONCURRENCY)
            async with self._summary_slots:
                result = await asyncio.to_thread(self.tenant_summary, tenant)
        finally:
            del self._pending[tenant]
        now = asyncio.get_running_loop().time()
        if len(self._summaries) >= _SUMMARY_CACHE_MAX:
            self._summaries = {t: v for t, v in self._summaries.items() if now - v[0] < SUMMARY_TTL}
            if len(self._summaries) >= _SUMMARY_CACHE_MAX:
                self._summaries.clear()
        self._summaries[tenant] = (now, result)
        return result


class _Fixed:
    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self):
        return self._families


__all__ = ["GROUP_FILE", "PROCESS_LABEL", "GroupFile", "Member", "alive", "calls_share", "per_process", "start_time"]
