"""The host's side of a service's kept output: lines tagged here and sent to the registry in batches.

The cell only writes bytes to its pipes; the host reads them (cell_process.OutputRelay), and this module tags each
line with the time the host read it, the stream it came on and the version the host loaded, so a service can forge
none of them nor write into another service's log (the registry files a batch under the service the host's ticket
names: registry/logs.py). At most MAX_PENDING bytes wait here (a registry that is restarting or slow); past it
lines are dropped and a note says how many. No Ray here: the host passes `send`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("solo.host")

SEND_EVERY = 0.5  # seconds between batches while there is output
MAX_BATCH = 256 << 10  # bytes in one batch (text and LINE_COST a line: at most 4,096 lines, under the registry's cap)
MAX_PENDING = 1 << 20  # bytes waiting to be sent (the same count); past it lines are dropped (counted)
MAX_TEXT = 8192  # characters of one line (the registry keeps no more)
LINE_COST = 64  # what a line costs beyond its text (its tags, the list holding it): empty lines are not free
RETRY_MAX = 5.0
PAUSE_MAX = 5.0  # the longest pause between batches the registry may ask for


class LogShipper:
    def __init__(self, send: Callable[[list[list]], Awaitable[dict | None]], version: str,
                 clock: Callable[[], float] = time.time):
        self.send, self.version, self.clock = send, version, clock
        self.pending: list[list] = []  # [time, stream, version, text]
        self.pending_bytes = 0
        self.dropped_lines = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._hurry = asyncio.Event()  # set by flush: no pause between batches any more
        self._task = asyncio.get_running_loop().create_task(self._run())

    def add(self, stream: str, texts: list[str]) -> None:
        """Lines the relay read on `stream` ("stdout", "stderr", or "solo" for the relay's own notes)."""
        now = self.clock()
        for text in texts:
            text = text[:MAX_TEXT]
            if self.pending_bytes + len(text) + LINE_COST > MAX_PENDING:
                self.dropped_lines += 1
                continue
            self.pending.append([now, stream, self.version, text])
            self.pending_bytes += len(text) + LINE_COST
        self._idle.clear()
        self._wake.set()

    def _batch(self) -> list[list]:
        if self.dropped_lines:
            self.pending.append([self.clock(), "solo", self.version, f"dropped {self.dropped_lines} lines of output "
                                 "(the registry did not take them fast enough)"])
            self.dropped_lines = 0
        size, count = 0, 0
        for line in self.pending:
            if count and size + len(line[3]) + LINE_COST > MAX_BATCH:
                break
            size += len(line[3]) + LINE_COST
            count += 1
        batch, self.pending = self.pending[:count], self.pending[count:]
        self.pending_bytes -= size
        return batch

    async def _run(self) -> None:
        delay = SEND_EVERY
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending or self.dropped_lines:
                batch = self._batch()
                try:
                    answer = await self.send(batch)
                    delay = SEND_EVERY
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the registry restarting, or gone: keep them and retry
                    self.pending[:0] = batch
                    self.pending_bytes += sum(len(line[3]) + LINE_COST for line in batch)
                    log.info("the service's output could not be sent to the registry (%s); retrying", exc)
                    delay = min(RETRY_MAX, delay * 2)
                    await asyncio.sleep(delay)
                    continue
                with contextlib.suppress(TimeoutError):  # what comes meanwhile goes in the next batch
                    await asyncio.wait_for(self._hurry.wait(), self._pause(answer))
            self._idle.set()

    @staticmethod
    def _pause(answer) -> float:
        """The pause before the next batch: longer when the registry asks (many hosts sending, or this tenant
        over its rate), so the registry's load stays bounded however many services print; bigger batches
        instead of more of them."""
        asked = answer.get("pause") if isinstance(answer, dict) else None
        if not isinstance(asked, (int, float)) or isinstance(asked, bool) or not asked == asked:
            return SEND_EVERY
        return min(PAUSE_MAX, max(SEND_EVERY, float(asked)))

    async def flush(self, timeout: float) -> None:
        """Wait (at most `timeout`) until what is pending was sent: before the host stops or ends."""
        self._hurry.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    def close(self) -> None:
        self._task.cancel()


__all__ = ["LogShipper"]
