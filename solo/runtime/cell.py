"""The program inside a cell: runs one tenant service, serves the calls its host hands over.

Started by the host (`cell_process.py`) as `python -I -m solo.runtime.cell CTL FDS NOFILE` inside
the sandbox (`sandbox.py`). It holds the `ServiceInstance` and everything that touches tenant
code: loading, calls (on the sockets the host authenticated, `host_server.CallProtocol`), hooks,
freeze/snapshot for hot swap, health. What it needs from outside (finding and calling other
services, egress) it asks its host for, over the control wire (`cellwire.py`): the host decides.

Everything in this process is reachable by the tenant's code, so nothing here is trusted by the
host: the host validates every answer, and this process holds no secret of Solo's.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import socket
import sys
import time

from solo import api
from solo.api import context_from
from solo.errors import FailedPrecondition, InvalidRequest, ServiceFailed
from solo.runtime import cellwire
from solo.runtime.host_server import CallProtocol, HostChannel
from solo.runtime.instance import ServiceInstance
from solo.runtime.peer import Discoverer  # imported while the cell waits for work, not during a deploy


class Cell:
    def __init__(self, ctl_fd: int, fds_fd: int, egress_fd: int):
        self.ctl_fd, self.fds_fd, self.egress_fd = ctl_fd, fds_fd, egress_fd
        self.channel = HostChannel()
        self.wire: cellwire.Wire | None = None
        self.instance: ServiceInstance | None = None
        self._loading = False
        self._snapshotting = False  # a periodic snapshot() is running (op_snapshot)
        self._sockets: dict[int, asyncio.Future] = {}  # sockets the host sends for our requests, by ref

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=self.ctl_fd))
        self.wire = cellwire.Wire(reader, writer, self.handle, name="cell")
        fds = socket.socket(fileno=self.fds_fd)
        fds.setblocking(False)
        loop.add_reader(fds, self._on_sockets, fds)
        await self.wire.done  # the host closed the wire (or died): nothing left to serve

    # -- sockets from the host ---------------------------------------------------------------------
    def _on_sockets(self, fds: socket.socket) -> None:
        try:
            cellwire.receive_sockets(fds, self._take)
        except ConnectionError:
            asyncio.get_running_loop().remove_reader(fds)

    def _take(self, header: dict, sock: socket.socket) -> None:
        if header.get("kind") == "call":
            expires = header.get("expires", 0.0)
            expires = float(expires) if isinstance(expires, (int, float)) else 0.0
            asyncio.ensure_future(asyncio.get_running_loop().connect_accepted_socket(
                lambda: CallProtocol(self.channel, expires), sock))
            return
        ref = header.get("ref")
        if not isinstance(ref, int):
            sock.close()
            return
        future = self._sockets.setdefault(ref, asyncio.get_running_loop().create_future())  # may come before the answer
        if future.done():
            sock.close()
        else:
            future.set_result(sock)

    async def socket_for(self, op: str, **fields) -> tuple[dict, socket.socket]:
        """Ask the host for a connected socket (a peer service, an allowed egress destination)."""
        header, _ = await self.wire.request(op, **fields)
        ref = header.get("ref")
        future = self._sockets.setdefault(ref, asyncio.get_running_loop().create_future())
        try:
            return header, await asyncio.wait_for(future, 10.0)
        finally:
            self._sockets.pop(ref, None)

    # -- control requests from the host -------------------------------------------------------------
    async def handle(self, op: str, header: dict, body: bytes) -> tuple[dict, bytes]:
        method = getattr(self, f"op_{op}", None)
        if method is None:
            raise cellwire.reject_unknown(op)
        return await method(header, body)

    async def op_ping(self, h: dict, body: bytes) -> tuple[dict, bytes]:
        return {"pid": os.getpid()}, b""

    async def op_load(self, h: dict, source: bytes) -> tuple[dict, bytes]:
        if self.instance is not None or self._loading:
            raise FailedPrecondition("this host already runs a service")
        self._loading = True
        os.environ.update(h["env"])
        if h.get("egress"):  # before the service's imports, so every library sees the wrapped socket functions
            from solo.runtime import egress

            egress.install(socket.socket(fileno=self.egress_fd), h["egress"])
        api._discoverer = Discoverer(self, h["tenant"])
        secrets = {k: base64.b64decode(v) for k, v in (h.get("secrets") or {}).items()}  # the vault's, by key
        context = context_from(h["tenant"], h["name"], h["version"], h["config_json"], h["labels"], secrets)
        instance = await ServiceInstance.load(source.decode(), h["filename"], h["class_name"], context,
                                              h["max_concurrency"])
        healthy, why = await instance.healthy()
        if not healthy:
            await instance.close()
            raise ServiceFailed(f"{instance.class_name} started but its health check failed: {why}")
        self.instance = self.channel.instance = instance
        return {"methods": sorted(instance.methods), "class_name": instance.class_name,
                "started_at": instance.started_at}, b""

    def _require(self) -> ServiceInstance:
        if self.instance is None:
            raise FailedPrecondition("no service is loaded on this host")
        return self.instance

    async def op_health(self, h: dict, body: bytes) -> tuple[dict, bytes]:
        if self.instance is None:
            return {"ok": True, "why": "idle"}, b""
        ok, why = await self.instance.healthy()
        return {"ok": ok, "why": why}, b""

    async def op_freeze(self, h: dict, body: bytes) -> tuple[dict, bytes]:
        """Stop taking calls (answered MOVED and re-sent by the gateway), let the ones in flight finish,
        then snapshot the state. Thawed again when the calls do not finish in time."""
        instance = self._require()
        drain_seconds, max_state_bytes = float(h["drain_seconds"]), int(h["max_state_bytes"])
        self.channel.moved = True
        deadline = time.monotonic() + drain_seconds
        while instance.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if instance.in_flight:
            self.channel.moved = False
            raise FailedPrecondition(f"{instance.in_flight} call(s) were still running after {drain_seconds:g}s, "
                                     "so the state could not be taken without losing their updates; the old "
                                     "version keeps serving. Retry, or raise [swap] drain_seconds")
        has_snapshot = instance.has_hook("snapshot")
        state = await instance.hook("snapshot") if has_snapshot else None
        if state is None:
            return {"has_snapshot": has_snapshot, "state": False}, b""
        try:
            return {"has_snapshot": True, "state": True}, _state_text(instance, state, max_state_bytes)
        except InvalidRequest:
            self.channel.moved = False
            raise

    async def op_snapshot(self, h: dict, body: bytes) -> tuple[dict, bytes]:
        """snapshot() while the service keeps serving (the registry's periodic snapshots): nothing is drained or
        frozen. A sync snapshot() runs in the service's call threads (between calls at max_concurrency 1), an
        async one beside them. One at a time: a snapshot() that hangs holds one thread, not one per request."""
        instance = self._require()
        if not instance.has_hook("snapshot"):
            return {"has_snapshot": False, "state": False}, b""
        if self._snapshotting:
            raise FailedPrecondition(f"{instance.class_name}.snapshot() has not returned from the last request yet")
        self._snapshotting = True
        try:
            state = await instance.hook("snapshot")
        finally:
            self._snapshotting = False
        if state is None:
            return {"has_snapshot": True, "state": False}, b""
        return {"has_snapshot": True, "state": True}, _state_text(instance, state, int(h["max_state_bytes"]))

    async def op_thaw(self, h: dict, body: bytes) -> tuple[dict, bytes]:
        self.channel.moved = False
        return {}, b""

    async def op_restore(self, h: dict, state: bytes) -> tuple[dict, bytes]:
        instance = self._require()
        if not instance.has_hook("restore"):
            return {"restored": False}, b""
        await instance.hook("restore", json.loads(state))
        return {"restored": True}, b""

    async def op_stats(self, h: dict, body: bytes) -> tuple[dict, bytes]:
        inst = self.instance
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"calls": inst.calls if inst else 0, "errors": inst.errors if inst else 0,
                "failed": inst.failed if inst else 0, "in_flight": inst.in_flight if inst else 0,
                "cpu_seconds": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime}, b""

    async def op_stop(self, h: dict, body: bytes) -> tuple[dict, bytes]:
        """Drain in-flight calls (up to the grace period), run the stop hook."""
        message = ""
        if self.instance is not None:
            deadline = time.monotonic() + float(h["grace_seconds"])
            while self.instance.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            try:
                await asyncio.wait_for(self.instance.close(), max(0.1, deadline - time.monotonic()))
            except ServiceFailed as exc:
                message = exc.message
            except TimeoutError:
                message = "stop() did not return within the grace period"
        for connection in list(self.channel.connections):
            if connection.transport is not None:
                connection.transport.close()
        return {"message": message}, b""


def _state_text(instance: ServiceInstance, state, max_state_bytes: int) -> bytes:
    """What snapshot() returned as JSON text, within [swap] max_state_bytes."""
    try:
        text = json.dumps(state)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"{instance.class_name}.snapshot() must return JSON-compatible data "
                             f"(dicts, lists, strings, numbers): {exc}") from None
    if len(text) > max_state_bytes:
        raise InvalidRequest(f"{instance.class_name}.snapshot() returned {len(text) >> 20} MiB of JSON, more than "
                             f"[swap] max_state_bytes ({max_state_bytes >> 20} MiB); keep large data outside the "
                             "service's memory or ask the operator for a larger limit")
    return text.encode()


def main(argv: list[str]) -> None:
    ctl_fd, fds_fd, egress_fd, max_files = (int(a) for a in argv[:4])
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))
    # the cell runs `python -I`, which ignores PYTHONUNBUFFERED: without this a service's prints would wait in an
    # 8 KiB buffer (a pipe is not a terminal) and reach `solo logs` late, or never if the cell is killed
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    try:
        asyncio.run(Cell(ctl_fd, fds_fd, egress_fd).run())
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # a last line without its newline
        os._exit(0)  # threads the service left running do not keep a stopped cell alive


if __name__ == "__main__":
    main(sys.argv[1:])
