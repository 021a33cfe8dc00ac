"""The supervisor's side of `[gateway] processes = N`: start gateway processes 1 .. N-1, restart one that
dies (with back-off, logged), stop them all on `solo down`. Process 0 is the supervisor's own gateway."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import solo
from solo.config import SoloConfig
from solo.config_reload import ConfigSource
from solo.errors import FailedPrecondition
from solo.gateway.group import GroupFile

log = logging.getLogger("solo")
PACKAGE_ROOT = str(Path(solo.__file__).resolve().parent.parent)


class GatewayChildren:
    def __init__(self, config: SoloConfig, group: GroupFile, port: int, ray_address: str, control_secret: str,
                 internal_token: str, backoff: float = 0.5, backoff_max: float = 10.0,
                 source: ConfigSource | None = None):
        self.config = config
        self.source = source  # what a config reload loads again (every process can be asked to reload)
        self.group = group
        self.port = port
        self.ray_address = ray_address
        self.secret = control_secret
        self.token = internal_token
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.procs: dict[int, subprocess.Popen] = {}
        self.restarts: dict[int, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    @property
    def pids(self) -> dict[int, int]:
        return {i: p.pid for i, p in self.procs.items()}

    def _spawn(self, index: int) -> subprocess.Popen:
        self.group.write(index, pid=0, route_version=0, metrics_port=0, ready=False)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH"))
                                                          if p)}
        proc = subprocess.Popen([sys.executable, "-m", "solo.runtime.gateway_process", str(index)],
                                stdin=subprocess.PIPE, env=env)
        proc.stdin.write(json.dumps({
            "index": index, "port": self.port, "ray_address": self.ray_address, "control_secret": self.secret,
            "internal_token": self.token, "parent": os.getpid(),
            "config_source": self.source.to_json() if self.source is not None else None,
            "config": self.config.model_dump(mode="json")}).encode())
        proc.stdin.close()
        self.procs[index] = proc
        return proc

    async def _ready(self, index: int, proc: subprocess.Popen, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            slot = self.group.slot(index)
            if slot.pid == proc.pid and slot.ready:
                return True
            if proc.poll() is not None:
                return False
            await asyncio.sleep(0.05)
        return False

    async def start(self, timeout: float = 120.0) -> None:
        """Start every child and wait until each serves; FailedPrecondition (and none left running) otherwise."""
        for index in range(1, self.config.gateway.processes):
            self._spawn(index)
        for index, proc in list(self.procs.items()):
            if not await self._ready(index, proc, timeout):
                await self.stop()
                raise FailedPrecondition(f"gateway process {index} did not start (exit code {proc.poll()}); see its "
                                         "output in the log above")
        self._tasks = [asyncio.create_task(self._keep(i)) for i in self.procs]

    async def _keep(self, index: int) -> None:
        """Restart process `index` whenever it exits, 0.5 s, 1 s, 2 s ... up to 10 s after the last start;
        the back-off starts over once a process has served for a minute."""
        delay = self.backoff
        while not self._stopping:
            proc = self.procs[index]
            started = time.monotonic()
            while proc.poll() is None:
                await asyncio.sleep(0.2)
            if self._stopping:
                return
            if time.monotonic() - started > 60:
                delay = self.backoff
            self.restarts[index] = self.restarts.get(index, 0) + 1
            log.warning("gateway process %d (pid %d) exited with code %s; restarting it in %.1f s (restart %d)",
                        index, proc.pid, proc.returncode, delay, self.restarts[index])
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
            if self._stopping:
                return
            proc = self._spawn(index)
            if await self._ready(index, proc, 120.0):
                log.warning("gateway process %d is back (pid %d)", index, proc.pid)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every child, wait up to `grace`, then SIGKILL what is left."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in self.procs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for proc in self.procs.values():
            if proc.poll() is None:
                log.warning("gateway process (pid %d) did not stop within %gs; killing it", proc.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
