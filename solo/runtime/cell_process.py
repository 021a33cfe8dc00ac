"""The host's side of its cell: start it, talk to it, hand it sockets, watch it, end it.

The cell is started when the host starts (so warm-pool hosts have warm cells, and a deploy only
sends source), as a child of the host process: cgroups the host joins at load are joined by the
cell's processes too, and `bwrap --die-with-parent` ends the cell if the host dies. No Ray here.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from solo.runtime import cell_seccomp, cellwire, sandbox
from solo.runtime.egress import HostEgress

log = logging.getLogger("solo.host")

START_SECONDS = 30.0
OUTPUT_RATE = 64 << 10  # bytes a second of a service's output that reach the host's log
OUTPUT_BURST = 1 << 20
MAX_LINE = 8192  # bytes of one line of output the relay holds waiting for its end; longer lines go in pieces
# terminal escape sequences (CSI, OSC, DCS/SOS/PM/APC strings, two-byte ESC sequences), then every control
# character but tab, the line and paragraph separators (str.splitlines() ends a line at U+2028/U+2029 too) and the
# bidirectional marks, embeddings, overrides and isolates, so a service cannot restyle, retitle, rewrite or split
# the log into lines that look like Solo's own
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
                      r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # OSC (titles), DCS...
                      r"|\x1b[ -/]*[0-~]?")  # the rest (a lone ESC included)
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

Handler = Callable[[str, dict, bytes], Awaitable[tuple[dict, bytes]]]


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (threads' children included), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return found


def exit_reason(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by signal {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with code {status}"


def printable(text: str) -> str:
    """`text` without terminal escapes or control characters (tab kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


class OutputBudget:
    """The bytes a second of a service's output that are kept, stdout and stderr together: OUTPUT_RATE with a
    burst of OUTPUT_BURST. What is over it is dropped and counted (`dropped`) until a relay reports it."""

    def __init__(self, rate: float = OUTPUT_RATE, burst: float = OUTPUT_BURST, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.left, self.at, self.dropped = float(burst), clock(), 0

    def take(self, size: int) -> bool:
        now = self.clock()
        self.left = min(self.burst, self.left + (now - self.at) * self.rate)
        self.at = now
        if size > self.left:
            return False
        self.left -= size
        return True

    def note(self) -> list[str]:
        """What was dropped since the last note, said once."""
        dropped, self.dropped = self.dropped, 0
        return [f"dropped {dropped} bytes of output (over the rate limit of {self.rate / 1024:g} KiB/s, burst "
                f"{self.burst / 1024:g} KiB)"] if dropped else []


class OutputRelay:
    """What the service prints on one stream (stdout or stderr), copied to the host's stderr (Ray's log of the
    host) within a byte budget shared by the service's streams (OutputBudget); what is over it is dropped and
    counted.

    Every line leaves as `[label] text`, the label being the service (tenant/name) once it is loaded, the
    host's name before, and the text cleaned of escapes and control characters (`printable`): the log's
    reader can always tell the service's output from Solo's own lines, and a service cannot forge them or
    send escapes to the operator's terminal. Once the host sets `keep` (at load), each cleaned line also goes
    to it as (stream, lines), and a note of dropped bytes as ("solo", [note]): the host tags and keeps them
    (runtime/logship.py); the cell chooses neither the stream nor the tags."""

    def __init__(self, pipe, sink=None, label: str = "", stream: str = "stdout", budget: OutputBudget | None = None,
                 keep: Callable[[str, list[str]], None] | None = None):
        self.pipe, self.sink = pipe, sink or sys.stderr
        self.label, self.stream, self.keep = label, stream, keep
        self.budget = budget or OutputBudget()
        self.partial = b""  # the start of a line whose end has not come yet
        os.set_blocking(pipe.fileno(), False)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(pipe.fileno(), self._readable)

    def _readable(self) -> None:
        data = cellwire.read_ready(lambda: os.read(self.pipe.fileno(), 65536))
        if data is None:
            return
        if not data:
            self.close()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        if not self.budget.take(len(data)):
            self.budget.dropped += len(data) + len(self.partial)
            self.partial = b""  # its end is lost with this data: it is not glued to a later line
            return
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE:
            lines.append(self.partial)
            self.partial = b""
        self._note()
        self._write([line.decode(errors="replace") for line in lines])

    def _note(self) -> None:
        notes = self.budget.note()
        if notes:
            self._emit(f"[service output: {notes[0]}]")
            if self.keep is not None:
                self.keep("solo", notes)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        cleaned = [printable(line) for line in lines]
        self._emit(*cleaned)
        if self.keep is not None:
            self.keep(self.stream, cleaned)

    def _emit(self, *lines: str) -> None:
        prefix = f"[{printable(self.label)}] " if self.label else ""
        try:
            self.sink.write("".join(f"{prefix}{line}\n" for line in lines))
            self.sink.flush()
        except (OSError, ValueError):
            pass

    def drain(self) -> None:
        """Read what is already in the pipe (the service's last words before it ended or was stopped)."""
        if self.pipe.closed:
            return
        for _ in range(64):  # at most 4 MiB: a pipe holds far less, unless a process still writes
            try:
                data = os.read(self.pipe.fileno(), 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            self._take(data)

    def close(self) -> None:
        self.drain()
        if self.partial:
            self._write([self.partial.decode(errors="replace")])
            self.partial = b""
        self._note()
        if not self.pipe.closed:
            self.loop.remove_reader(self.pipe.fileno())
            self.pipe.close()


class CellProcess:
    def __init__(self, proc: subprocess.Popen, wire: cellwire.Wire, fds: socket.socket, egress: socket.socket,
                 policy: sandbox.CellPolicy, label: str = ""):
        self.proc, self.wire, self.fds, self.policy = proc, wire, fds, policy
        self.egress = HostEgress(egress)
        budget = OutputBudget()  # the host relabels both with the service at load (capture)
        self.output = OutputRelay(proc.stdout, label=label, budget=budget)
        self.errors = OutputRelay(proc.stderr, label=label, stream="stderr", budget=budget)
        self.pid = proc.pid
        self.exited = asyncio.get_running_loop().create_future()
        self._watch()

    @classmethod
    async def start(cls, policy: sandbox.CellPolicy, handler: Handler, label: str = "") -> CellProcess:
        ctl_host, ctl_cell = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds_host, fds_cell = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        egress_host, egress_cell = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        seccomp_fd = cell_seccomp.bpf_fd() if policy.mechanism == "bwrap" and policy.seccomp else None
        ends = [ctl_cell.fileno(), fds_cell.fileno(), egress_cell.fileno()]
        keep = ends + ([seccomp_fd] if seccomp_fd is not None else [])
        argv = sandbox.cell_command(policy, ends, seccomp_fd)
        env = None if policy.mechanism == "bwrap" else sandbox.cell_env(policy)
        scratch = None
        if policy.mechanism == "off":
            import tempfile

            scratch = tempfile.mkdtemp(prefix="solo-cell-")
            env = {**env, "HOME": scratch, "TMPDIR": scratch}
        try:
            # the cell's output goes through a pipe the host reads (OutputRelay), never to the host's own files
            proc = subprocess.Popen(argv, pass_fds=keep, env=env if env is not None else {}, cwd=scratch,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        finally:
            for end in (ctl_cell, fds_cell, egress_cell):
                end.close()
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        fds_host.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=ctl_host)
        wire = cellwire.Wire(reader, writer, handler, name="host")
        cell = cls(proc, wire, fds_host, egress_host, policy, label)
        try:
            await wire.request("ping", timeout=START_SECONDS)
        except BaseException:
            cell.kill()
            raise
        return cell

    def _watch(self) -> None:
        """Notice the cell's exit at once (a pidfd becomes readable), without a thread."""
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            loop.create_task(self._poll_exit())
            return

        def gone() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._ended()

        loop.add_reader(pidfd, gone)

    async def _poll_exit(self) -> None:
        while self.proc.poll() is None:
            await asyncio.sleep(0.1)
        self._ended()

    def _ended(self) -> None:
        status = self.proc.wait()
        self.wire.close("the service's process ended")
        if not self.exited.done():
            self.exited.set_result(exit_reason(status))

    def ended(self) -> str:
        """Why the cell's process ended ('' while it runs). Asks the kernel too, so an exit the event loop has
        not been told of yet (its pidfd not read) counts."""
        if not self.exited.done() and self.proc.poll() is not None:
            self._ended()
        return self.exited.result() if self.exited.done() else ""

    def pids(self) -> list[int]:
        return descendants(self.pid) if self.proc.poll() is None else []

    def capture(self, label: str, keep: Callable[[str, list[str]], None]) -> None:
        """From now on the output is labelled `label` in the host's log and each line also goes to `keep`."""
        for relay in (self.output, self.errors):
            relay.label, relay.keep = label, keep

    def drain(self) -> None:
        """Take in what the service wrote before it ended (its pipes may still hold it)."""
        for relay in (self.output, self.errors):
            relay.drain()

    def hand(self, header: dict, sock: socket.socket) -> bool:
        return cellwire.send_socket(self.fds, header, sock)

    async def request(self, op: str, body: bytes = b"", timeout: float | None = None, **fields):
        return await self.wire.request(op, body, timeout, **fields)

    def kill(self) -> None:
        """End the whole cell: its pid namespace ends with the process bwrap made its init."""
        self.wire.close("stopped")
        self.egress.close()
        self.output.close()
        self.errors.close()
        for pid in reversed(self.pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.fds.close()


__all__ = ["CellProcess", "OutputBudget", "OutputRelay", "descendants", "exit_reason", "printable"]
