"""ServiceHost: the Ray actor that hosts one service version (the Ray shell around it and its cell).

It starts empty (so a warm pool of hosts can wait for work) with its cell already running, then
`load()` sends a tenant's source into the cell. The host runs only Solo's code: it listens on the
call port and authenticates each connection before handing it to the cell (host_listener.py),
applies the limits, answers the registry's control calls by asking the cell, and does what the
cell may not do itself (find other services, open allowed egress connections). The tenant's
code runs in the cell (cell.py), locked down by sandbox.py. Ray is used for placement,
lifecycle and control calls only.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import resource
import secrets
import socket
import time

import solo.core.spec  # noqa: F401 - egress rules are parsed with it at load: imported with the host, not in a deploy
from solo.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidRequest,
    Overloaded,
    ServiceFailed,
    SoloError,
    Unavailable,
)
from solo.runtime import limits
from solo.runtime.cell_process import CellProcess
from solo.runtime.egress import parse_rules
from solo.runtime.host_listener import HANDSHAKE_SECONDS, HostListener, connect_authenticated, end_relays
from solo.runtime.logship import LogShipper
from solo.runtime.sandbox import CellPolicy, SandboxUnavailable, check_data_dir
from solo.security import seal
from solo.security.node_tls import NodeTls
from solo.security.ratelimit import Rate, RateLimiter
from solo.security.vault import SEAL_PURPOSE, scrubber

log = logging.getLogger("solo.host")
DISCOVER_RATE = 20.0  # lookups a second a cell may ask its host for (each is a registry call), burst 2 s of it
# how long the host waits for its cell to answer a control request (a hostile or hung cell must not hold the
# registry's call, nor pile up waiting requests here): a little under what the registry itself waits, so its
# caller sees which hook did not answer
HEALTH_SECONDS = 8.0
THAW_SECONDS = 4.0
FREEZE_EXTRA_SECONDS = 8.0  # beyond the drain
RESTORE_SECONDS = 60.0
SNAPSHOT_SECONDS = 10.0  # a periodic snapshot() (registry/snapshots.py); the service keeps serving meanwhile
STATS_SECONDS = 2.0
LAST_WORDS_SECONDS = 2.0  # how long an ending host waits for its service's last output to reach the registry


class ServiceHost:
    def __init__(self, bind_host: str = "", sandbox: dict | None = None, channel: dict | None = None):
        """`channel`: {"tls_mode", "tls_dir"} ([tls] hosts, node_dir: security/node_tls.py) and "seal_to", the
        registry's public key: this host's key leaves it only sealed to it (security/seal.py)."""
        import ray  # the host is a Ray actor; Ray is already imported in this process

        self._bind_host = bind_host or ray.util.get_node_ip_address()
        self._node_id = ray.get_runtime_context().get_node_id()
        self._name = ray.get_runtime_context().get_actor_name() or ""
        self._namespace = ray.get_runtime_context().namespace
        self._key = secrets.token_urlsafe(24)
        self._policy = CellPolicy(**(sandbox or {}))
        channel = channel or {}
        seal_to = channel.get("seal_to", "")  # the key leaves this host only sealed (once, here)
        self._key_out = seal.seal(seal_to, self._key, "host key") if seal_to else self._key
        self._secrets_key = seal.new_key()  # the registry seals a service's vault secrets to it (registry/vault.py)
        self._said = str  # what the service's texts pass through (set at load: its secrets and env values out)
        self._tls_problem: Exception | None = None
        self._tls = None
        try:
            self._tls = NodeTls.load(channel.get("tls_mode", "off"), channel.get("tls_dir", ""),
                                     where=f"node {self._bind_host}")
            if self._tls is not None and self._policy.mechanism != "off":
                check_data_dir(self._tls.directory, "[tls] node_dir (the node's private key)")
        except (FailedPrecondition, SandboxUnavailable) as exc:
            # ready() says it: a host that cannot speak the channel (or would show its key to cells) must not serve
            self._tls_problem = exc if isinstance(exc, FailedPrecondition) else FailedPrecondition(str(exc))
        self._listener = HostListener(self._key, self._handoff, self._tls)
        self._cell: CellProcess | None = None
        self._port = 0
        self._start_lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._stopping = False
        self._load_lock = asyncio.Lock()
        self._loaded: dict | None = None
        self._load_sent = False  # a load reached the cell: from then on its cell is never replaced
        self._violation: dict | None = None  # set when the host ended itself for breaking a limit
        self._watchdog: asyncio.Task | None = None
        self._limits = ""
        self._tenant = self._service = self._ticket = ""
        self._refs = 0
        self._discover_limit = RateLimiter(Rate(DISCOVER_RATE, 2 * DISCOVER_RATE))
        self._logs: LogShipper | None = None  # the service's output on its way to the registry (from load on)
        self._ending: asyncio.Task | None = None

    async def ready(self) -> dict:
        """Start the cell and the call port (once); a cell that died before any service was sent to it (a
        warm-pool host waiting for work) is replaced, so the host stays usable."""
        if self._tls_problem is not None:
            raise self._tls_problem
        async with self._start_lock:
            cell = self._cell
            if cell is not None and not self._stopping and self._loaded is None and (why := cell.ended()):
                if self._load_sent:
                    raise Unavailable(f"this host's service process {why} before the service started; the host "
                                      "cannot be used again: start the service on a new host")
                log.warning("the idle cell %s before any service was loaded; starting a new one", why)
                cell.kill()
                self._cell = None
            if self._cell is None:
                self._cell = await self._start_cell()
                self._cell.exited.add_done_callback(self._cell_ended)
            if not self._port:
                self._port = await self._listener.start(self._bind_host)
        return {"address": f"{self._bind_host}:{self._port}", "key": self._key_out, "pid": os.getpid(),
                "node_id": self._node_id, "node_ip": self._bind_host, "host": self._name,
                "cell_pid": self._cell.pid, "sandbox": self._policy.describe(),
                "seal_key": seal.public_text(self._secrets_key)}

    async def _start_cell(self) -> CellProcess:
        try:
            return await CellProcess.start(self._policy, self._from_cell, label=self._name or f"host-{os.getpid()}")
        except Exception as exc:  # noqa: BLE001 - one clear error whatever went wrong (bwrap, the ping, seccomp)
            raise Unavailable(f"this host could not start the sandboxed process services run in "
                              f"({type(exc).__name__}: {exc}); check that bubblewrap works on this node "
                              "(`solo up` probes it) and see the host's log") from None

    def _cell_ended(self, future: asyncio.Future) -> None:
        """The cell's process is gone. Unless the host stopped it, the service crashed (its code exited, a
        signal, native code): the host ends too, so the registry sees the process die and restarts it."""
        if future is not getattr(self._cell, "exited", None):
            return  # an idle cell that was replaced (ready)
        if self._stopping or self._violation is not None or self._loaded is None:
            return  # stopped on purpose, or not serving yet (a failed load is the registry's to clean up)
        log.warning("the service's cell %s; ending the host", future.result())
        self._listener.close()
        self._ending = asyncio.get_running_loop().create_task(self._end(70))

    async def _end(self, code: int) -> None:
        """End the host once its service's last output (a traceback, say) reached the registry, or after
        LAST_WORDS_SECONDS."""
        if self._cell is not None:
            self._cell.drain()
        if self._logs is not None:
            await self._logs.flush(LAST_WORDS_SECONDS)
        os._exit(code)

    def _handoff(self, sock: socket.socket, expires: float) -> bool:
        cell = self._cell
        return cell is not None and not self._stopping and cell.hand({"kind": "call", "expires": expires}, sock)

    async def describe(self) -> dict | None:
        """What a rebuilt registry needs to take this host over (None when nothing is loaded)."""
        if self._loaded is None:
            return None
        return {**await self.ready(), **self._loaded, "limits": self._limits}

    async def load(self, tenant: str, name: str, version: str, source: str, filename: str, class_name: str,
                   env: dict, config_json: str, labels: dict, max_concurrency: int, memory_bytes: int = 0,
                   num_cpus: float = 0.0, check_seconds: float = 0.1, discovery_ticket: str = "",
                   allow_egress: tuple[str, ...] = (), secrets: str = "") -> dict:
        """`secrets`: the service's vault secrets sealed to this host (registry/vault.py), handed to the cell."""
        async with self._load_lock:
            if self._loaded is not None:
                raise FailedPrecondition("this host already runs a service")
            placement = await self.ready()
            cell = self._cell
            # limits first, so the service's imports count; the host's and the idle cell's own footprint
            # (Python, Ray) does not: the watchdog measures the cell's growth above it, and a cgroup charges only
            # what is allocated after joining
            pids = cell.pids()
            baseline = limits.tree_rss_bytes(pids)
            applied = limits.apply(pids, self._name or f"host-{os.getpid()}", memory_bytes, num_cpus,
                                   max_tasks=limits.tasks_for(max_concurrency))
            self._limits = applied.describe() + f"; sandbox: {self._policy.describe()}"
            self._tenant, self._service, self._ticket = tenant, name, discovery_ticket
            header = {"tenant": tenant, "name": name, "version": version, "filename": filename,
                      "class_name": class_name, "env": dict(env), "config_json": config_json, "labels": dict(labels),
                      "max_concurrency": max_concurrency, "egress": list(allow_egress),
                      "secrets": self._open_secrets(secrets)}
            # the service's failure texts leave the host (to status, events, the WAL) without its secrets or env values
            self._said = cell.wire.scrub = scrubber(header["secrets"], header["env"])
            cell.egress.rules = parse_rules(allow_egress)  # what the host checks; the cell's copy is a convenience
            self._logs = LogShipper(self._send_logs, version)  # the host tags each line, not the cell
            cell.capture(f"{tenant}/{name}", self._logs.add)  # labelled with the service and kept from now on
            # the watchdog runs from before the source is sent: what the service's imports and constructor allocate
            # counts too (kept when the load succeeds, ended when it fails)
            if memory_bytes:
                self._watchdog = asyncio.get_running_loop().create_task(
                    self._watch_memory(baseline, memory_bytes, check_seconds, applied.memory))
            self._load_sent = True
            try:
                answer = await self._load_in_cell(cell, source, header, memory_bytes)
            except BaseException as exc:
                if self._watchdog is not None and self._violation is None:
                    self._watchdog.cancel()
                    self._watchdog = None
                if not isinstance(exc, asyncio.CancelledError):  # what it printed before failing says why: kept
                    cell.drain()  # before the registry discards this host
                    await self._logs.flush(LAST_WORDS_SECONDS)
                raise
            self._loaded = {"methods": _strings(answer.get("methods")), "class_name": _text(answer.get("class_name")),
                            "started_at": _number(answer.get("started_at"), time.time())}
            return {**placement, **self._loaded, "limits": self._limits}

    async def _load_in_cell(self, cell: CellProcess, source: str, header: dict, memory_bytes: int) -> dict:
        try:
            answer, _ = await cell.request("load", source.encode(), **header)
        except Unavailable:
            if self._violation is not None:
                raise self._over_memory_while_loading() from None
            if not cell.exited.done():
                await asyncio.wait({cell.exited}, timeout=2.0)
            why = cell.ended() or "closed its control channel"
            if memory_bytes and "SIGKILL" in why:  # the memory cgroup acts on a spike between the watchdog's samples
                why += (f" (likely for allocating far more than its memory limit of {memory_bytes >> 20} MiB at once; "
                        "allocate less at start-up or deploy with a larger memory limit)")
            raise _exited_while_starting(why) from None
        if self._violation is not None:  # the watchdog ended it as it answered (the same event-loop turn)
            raise self._over_memory_while_loading()
        why = cell.ended()  # it answered, then exited: nothing would end the host for it later (not loaded yet)
        if why:
            raise _exited_while_starting(why)
        return answer

    def _open_secrets(self, sealed: str) -> dict:
        """{key: base64 value} from the registry's sealed answer (never logged; only the cell gets it)."""
        if not sealed:
            return {}
        try:
            values = json.loads(seal.open_sealed(self._secrets_key, sealed, SEAL_PURPOSE))
        except (seal.SealError, ValueError):
            raise Unavailable("the service's secrets could not be opened on this host (sealed for another host); "
                              "start the service again") from None
        return {k: v for k, v in values.items() if isinstance(k, str) and isinstance(v, str)}

    def _over_memory_while_loading(self) -> ServiceFailed:
        v = self._violation
        used = math.ceil(v["used_bytes"] / (1 << 20))
        return ServiceFailed(f"the service used {used} MiB while starting (its imports and constructor), more than "
                             f"its memory limit of {v['limit_bytes'] >> 20} MiB ({v['mechanism']}); allocate less at start-up or deploy with a larger memory limit",
                             exception_type="MemoryLimitExceeded")

    async def _watch_memory(self, baseline: int, limit: int, every: float, mechanism: str) -> None:
        """Sample the cell's RSS (every process in it); once the service uses more than `limit` above the idle
        cell's baseline, end the cell and then this process, telling why (wait_closed). While the service is
        still loading, only the cell ends: the load answers why (the registry discards a host whose load failed)."""
        while not self._closed.is_set():
            cell = self._cell
            rss = limits.tree_rss_bytes(cell.pids())
            if rss - baseline > limit:
                self._violation = {"limit": "memory", "used_bytes": rss - baseline, "limit_bytes": limit,
                                   "rss_bytes": rss, "baseline_bytes": baseline, "mechanism": mechanism}
                self._listener.close()
                cell.kill()  # the memory goes back to the machine at once...
                if self._loaded is None:
                    return  # ...and load() raises, telling why
                self._closed.set()  # ...wait_closed returns the violation to the registry...
                await asyncio.gather(asyncio.sleep(0.5), self._logs.flush(LAST_WORDS_SECONDS))  # (its last output)
                os._exit(137)  # ...then the host goes too
            await asyncio.sleep(every)

    # -- what the cell asks for ----------------------------------------------------------------------
    async def _from_cell(self, op: str, header: dict, body: bytes) -> tuple[dict, bytes]:
        if op == "discover":
            return await self._discover(_text(header.get("owner"), 64), _text(header.get("target"), 128))
        raise InvalidRequest(f"a service cannot ask its host for {op[:64]!r}")

    def _spend_discover(self) -> None:
        try:
            self._discover_limit.take(self._tenant, "discover")
        except Overloaded as exc:
            error = Overloaded(f"solo.discover() is limited to {DISCOVER_RATE:g} lookups a second per service; "
                               "keep the handle and reuse it")
            error.retry_after = exc.retry_after
            raise error from None

    async def _discover(self, owner: str, target: str) -> tuple[dict, bytes]:
        """Resolve `target` through the registry as this host's service, connect to it with the peer ticket,
        and hand the connected socket to the cell (the ticket and the address stay here)."""
        if not self._ticket:
            raise FailedPrecondition("solo.discover() works once the service is loaded")
        self._spend_discover()
        import ray

        from solo.runtime.launcher import REGISTRY_NAME, call_host

        registry = ray.get_actor(REGISTRY_NAME, namespace=self._namespace)
        mine = seal.new_key()  # the ticket comes back sealed to this request's own key
        found = await call_host(registry.resolve.remote(self._tenant, self._service, self._name, self._ticket,
                                                        owner, target, seal_to=seal.public_text(mine)),
                                10.0, f"finding service {target!r}")
        try:
            ticket = seal.open_sealed(mine, found["ticket"], "peer ticket")
        except seal.SealError as exc:
            raise Unavailable(f"the registry's answer for {target!r} could not be opened ({exc})") from None
        sock = await connect_authenticated(found["address"], ticket, tls=self._tls)
        self._refs += 1
        try:
            if not self._cell.hand({"kind": "reply", "ref": self._refs}, sock):
                raise Unavailable("the service is not reading the sockets its host hands it")
        finally:
            sock.close()
        return {"ref": self._refs, "version": found["version"], "concurrency": found["concurrency"],
                "queue": found["queue"]}, b""

    async def _send_logs(self, lines: list[list]) -> dict:
        """A batch of the service's output to the registry, which files it under the service this host's ticket
        names (registry/logs.py) and says how long to pause before the next."""
        import ray

        from solo.runtime.launcher import REGISTRY_NAME, call_host

        registry = ray.get_actor(REGISTRY_NAME, namespace=self._namespace)
        return await call_host(registry.append_logs.remote(self._tenant, self._service, self._name, self._ticket,
                                                           lines), 10.0, "sending the service's output")

    # -- hot swap ------------------------------------------------------------------------------
    async def freeze(self, drain_seconds: float, max_state_bytes: int = 64 << 20) -> dict:
        """Stop taking calls (they are answered MOVED and re-sent by the gateway), let the ones in flight
        finish, then snapshot the state. Thawed again when the calls do not finish in time.

        Returns {"state": JSON text or None (no snapshot()), "has_snapshot": bool}."""
        self._require()
        answer, state = await self._ask("freeze", "freeze (draining its calls and snapshot())",
                                        drain_seconds + FREEZE_EXTRA_SECONDS, drain_seconds=drain_seconds,
                                        max_state_bytes=max_state_bytes)
        if len(state) > max_state_bytes:  # the cell checks too; it is not trusted to
            await self.thaw()
            raise InvalidRequest(f"the service's snapshot is {len(state) >> 20} MiB, more than [swap] max_state_bytes")
        has_snapshot = answer.get("has_snapshot") is True
        if answer.get("state") is not True:
            return {"state": None, "has_snapshot": has_snapshot}
        try:
            return {"state": state.decode(), "has_snapshot": True}
        except UnicodeDecodeError:
            await self.thaw()
            raise InvalidRequest("the service's snapshot is not UTF-8 JSON text") from None

    async def thaw(self) -> None:
        """Serve calls again (a swap was abandoned or rolled back to this version)."""
        await self._ask("thaw", "thaw (serving calls again)", THAW_SECONDS)

    async def restore(self, state: str, timeout: float = RESTORE_SECONDS) -> bool:
        """Hand the previous version's snapshot to restore(); False when the service has no restore()."""
        self._require()
        answer, _ = await self._ask("restore", "restore()", timeout, state.encode())
        return answer.get("restored") is True

    async def snapshot(self, max_state_bytes: int = 64 << 20) -> dict:
        """The service's snapshot() while it keeps serving (nothing drained or frozen): the registry keeps the
        latest, so a service moved off a lost node comes back with it. The answer is the tenant's and checked
        here as freeze's is: at most `max_state_bytes` of UTF-8 text (it is parsed only by the restore() it
        is handed to, in a cell, within that service's limits).

        Returns {"state": JSON text or None (snapshot() returned None), "has_snapshot": bool}."""
        self._require()
        answer, state = await self._ask("snapshot", "snapshot()", SNAPSHOT_SECONDS, max_state_bytes=max_state_bytes)
        has_snapshot = answer.get("has_snapshot") is True
        if answer.get("state") is not True or not has_snapshot:
            return {"state": None, "has_snapshot": has_snapshot}
        if len(state) > max_state_bytes:  # the cell checks too; it is not trusted to
            raise InvalidRequest(f"the service's snapshot is {len(state) >> 20} MiB, more than [swap] max_state_bytes")
        try:
            return {"state": state.decode(), "has_snapshot": True}
        except UnicodeDecodeError:
            raise InvalidRequest("the service's snapshot is not UTF-8 JSON text") from None

    def _require(self) -> None:
        if self._loaded is None:
            raise FailedPrecondition("no service is loaded on this host")

    async def _ask(self, op: str, what: str, timeout: float, body: bytes = b"", **fields) -> tuple[dict, bytes]:
        """A control request to the cell that cannot wait forever: a cell that does not answer within `timeout`
        is DeadlineExceeded, naming what it did not answer."""
        cell = self._cell
        if cell is None:
            raise FailedPrecondition("this host has not started yet; no service is loaded on it")
        try:
            return await cell.request(op, body, timeout=timeout, **fields)
        except TimeoutError:
            raise DeadlineExceeded(f"the service did not answer {what} within {timeout:g}s: a hook that hangs, or "
                                   "code that blocks its event loop; fix the service, then try again") from None

    async def stats(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cell = self._cell
        answer = {}
        if self._loaded is not None and cell is not None:
            answer, _ = await self._ask("stats", "a request for its counters", STATS_SECONDS)
        pids = cell.pids() if cell is not None else []
        return {"calls": _count(answer.get("calls")), "errors": _count(answer.get("errors")),
                "failed": _count(answer.get("failed")), "in_flight": _count(answer.get("in_flight")),
                "rss_bytes": limits.tree_rss_bytes([os.getpid(), *pids]),
                "cpu_seconds": usage.ru_utime + usage.ru_stime + limits.tree_cpu_seconds(pids), "pid": os.getpid(),
                "cell_pid": cell.pid if cell is not None else 0}

    async def usage(self) -> dict:
        """This host's and its cell's resident memory and CPU seconds, read from /proc only (the cell is not
        asked, so a busy or hostile service cannot slow the registry's poll, registry/usage.py)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        pids = self._cell.pids() if self._cell is not None else []
        return {"rss_bytes": limits.tree_rss_bytes([os.getpid(), *pids]),
                "cpu_seconds": usage.ru_utime + usage.ru_stime + limits.tree_cpu_seconds(pids)}

    async def set_egress(self, allow_egress: list[str]) -> int:
        """The service's egress rules after a config reload ([runtime] tenant_egress, registry/reload.py): what its
        spec asks for and the operator still allows. New connections are checked against them; open ones stay."""
        cell = self._cell
        if cell is not None:
            cell.egress.rules = parse_rules(allow_egress)
        return len(allow_egress)

    async def health(self) -> tuple[bool, str]:
        if self._loaded is None:
            return True, "idle"
        answer, _ = await self._ask("health", "its health check (healthy())", HEALTH_SECONDS)
        return answer.get("ok") is True, self._said(_text(answer.get("why"), 1000))

    async def stop(self, grace_seconds: float = 5.0) -> str:
        """Drain in-flight calls (up to the grace period), run the stop hook, end the cell."""
        message = ""
        self._listener.close()
        # connections being authenticated right now were opened by gateways before the stop: they go to the cell
        # too, so the calls on them are drained like the others instead of failing
        await self._listener.settle(min(max(grace_seconds, 0.1), HANDSHAKE_SECONDS))
        self._stopping = True
        cell = self._cell
        if cell is not None:
            if self._loaded is not None:
                try:
                    answer, _ = await cell.request("stop", timeout=grace_seconds + 1.0, grace_seconds=grace_seconds)
                    message = self._said(_text(answer.get("message"), 1000))
                except TimeoutError:
                    message = "stop() did not return within the grace period"
                except SoloError as exc:
                    message = exc.message
            cell.kill()  # what it printed last (its stop hook's words) is read first
        if self._logs is not None:
            await self._logs.flush(LAST_WORDS_SECONDS)
        end_relays()
        self._closed.set()
        return message

    async def wait_closed(self) -> dict | None:
        """Returns when the host is stopped (None) or ended itself for breaking a limit (what and by how
        much); raises (via Ray) when the process dies."""
        await self._closed.wait()
        return self._violation


# -- what a cell answers is validated, never trusted ----------------------------------------------------
def _text(value, cap: int = 200) -> str:
    return value[:cap] if isinstance(value, str) else ""


def _strings(value, cap: int = 1000) -> list[str]:
    return [v[:200] for v in value[:cap] if isinstance(v, str)] if isinstance(value, list) else []


def _number(value, default: float) -> float:
    """A finite number (a huge int, inf or NaN from the cell would break what reads it: JSON, sums, clocks)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return default
    try:
        number = float(value)
    except OverflowError:  # an int past a float's range
        return default
    return number if math.isfinite(number) else default


def _count(value) -> int:
    """A count: an int in [0, 2**63) (it goes into int64 fields and metrics), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63 else 0


def _exited_while_starting(why: str) -> ServiceFailed:
    return ServiceFailed(f"the service process {why} while starting (os._exit, a signal, or a crash in native code)",
                         exception_type="ProcessExited")
