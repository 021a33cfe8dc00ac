"""The event-log actor: the single sequencer of event ids (a thin Ray shell around EventLog).

Concurrent appends are committed together: while one fsync runs, new appends queue up and the
next commit takes all of them (group commit). Every few seconds the committed tail is rolled into
a Parquet segment. Ray restarts the actor if its process dies; it recovers from the files.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import ray

from solo.errors import InvalidRequest, SoloError, Unavailable
from solo.events.crypto import chosen as chosen_encryption
from solo.events.log import EventLog, check_group, to_columns
from solo.events.readback import MAX_INT
from solo.security.control import gated

EVENT_LOG_NAME = "solo-events"
COLUMNAR_FROM_ROWS = 64  # groups this large cross the Ray hop as Arrow columns (bench/events.py)


class EventLogActor:
    def __init__(self, directory: str, roll_seconds: float = 5.0, roll_rows: int = 100_000,
                 compact_below_rows: int = 50_000, retention_days: float = 0, retention_bytes: int = 0,
                 tenant_retention_days: dict | None = None, retention_check_seconds: float = 60.0,
                 checkpoint_file: str | None = None, reloaded_file: str | None = None):
        self.log = EventLog(Path(directory), roll_rows=roll_rows, auto_roll=False,
                            **chosen_encryption(Path(directory)))  # [events] encrypt, as checked at start
        self.roll_seconds = roll_seconds
        self.compact_below_rows = compact_below_rows
        self._retention(retention_days, retention_bytes, tenant_retention_days, retention_check_seconds)
        if reloaded_file:  # restarted by Ray after a config reload: the reloaded retention, not the start's
            self._retention_reloaded(Path(reloaded_file))
        self.checkpoint_file = Path(checkpoint_file) if checkpoint_file else None
        self._retention_due = 0.0
        self._queue: list[tuple[list[dict], asyncio.Future]] = []
        self._committing = False
        self._committed = asyncio.Event()
        self._files = asyncio.Lock()  # segment changes (roll, compact, retention) vs reads of the files
        self._roll_now = asyncio.Event()
        self._roller: asyncio.Task | None = None
        self.failure = ""

    def _retention(self, days: float, max_bytes: int, tenant_days: dict | None, check_seconds: float) -> None:
        self.retention_age = days * 86_400 or None
        self.retention_bytes = max_bytes or None
        self.tenant_ages = {t: (d * 86_400 if d else None) for t, d in (tenant_days or {}).items()}
        self.retention_check_seconds = check_seconds

    def _retention_reloaded(self, path: Path) -> None:
        from solo.config_reload import reloaded_events
        events = reloaded_events(path)
        if events is not None:
            self._retention(events.retention_days, events.retention_bytes, dict(events.tenant_retention_days),
                            events.retention_check_seconds)

    async def set_retention(self, days: float, max_bytes: int, tenant_days: dict, check_seconds: float) -> dict:
        """[events] retention from a config reload (registry/reload.py), applied at the next roll."""
        self._retention(days, max_bytes, tenant_days, check_seconds)
        self._retention_due = 0.0
        return await self.retention()

    async def retention(self) -> dict:
        """The retention in force (seconds; None = no limit)."""
        return {"max_age_seconds": self.retention_age, "max_bytes": self.retention_bytes,
                "tenant_age_seconds": dict(self.tenant_ages), "check_seconds": self.retention_check_seconds}

    async def append(self, rows) -> tuple[int, int]:
        """Durably append `rows` (row dicts, or an Arrow table for bulk producers); returns their
        (first, last) id once they are fsynced."""
        try:
            check_group(rows)
        except ValueError as exc:  # this producer's mistake fails only this producer
            raise InvalidRequest(str(exc)) from None
        if self._roller is None:
            self._roller = asyncio.get_running_loop().create_task(self._roll_loop())
        future = asyncio.get_running_loop().create_future()
        self._queue.append((rows, future))
        if not self._committing:
            self._committing = True
            asyncio.get_running_loop().create_task(self._commit_loop())
        return await future

    async def _commit_loop(self) -> None:
        """One group commit at a time; appends never wait for a segment being written."""
        try:
            while self._queue:
                pending, self._queue = self._queue, []
                try:
                    ranges = await asyncio.to_thread(self.log.append_many, [rows for rows, _ in pending])
                except Exception as exc:  # noqa: BLE001 - disk full, permissions, I/O: fail closed
                    self.failure = f"the event log cannot be written ({getattr(exc, 'strerror', None) or exc})"
                    for _, future in pending:
                        future.set_exception(Unavailable(
                            f"{self.failure}; the operation was not recorded and did not happen"))
                    continue
                self.failure = ""
                for (_, future), id_range in zip(pending, ranges):
                    future.set_result(id_range)
                self._committed.set()
                self._committed = asyncio.Event()
                if self.log.should_roll:
                    self._roll_now.set()
        finally:
            self._committing = False

    async def _roll_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._roll_now.wait(), self.roll_seconds)
            except TimeoutError:
                pass
            self._roll_now.clear()
            try:
                async with self._files:
                    await asyncio.to_thread(self._maintain)
            except Exception as exc:  # noqa: BLE001 - keep appending to the WAL; say why
                self.failure = f"rolling the event log failed ({exc})"

    def _maintain(self) -> None:
        """Roll the committed tail, merge small segments, apply retention (in a worker thread)."""
        self.log.seal()
        if self.log.flush() is not None and self.compact_below_rows:
            self.log.compact(small_rows=self.compact_below_rows)
        if (self.retention_age or self.retention_bytes or self.tenant_ages) and time.monotonic() >= self._retention_due:
            self._retention_due = time.monotonic() + self.retention_check_seconds
            self.log.apply_retention(self.retention_age, self.retention_bytes, self.tenant_ages,
                                     keep_after_id=self._checkpointed())

    def _checkpointed(self) -> int | None:
        """Events after the registry's checkpoint are needed to rebuild it: retention keeps them."""
        if self.checkpoint_file is None:
            return None
        try:
            last_id = json.loads(self.checkpoint_file.read_text())["last_id"]
        except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError):
            return 0  # unreadable: keep everything (the registry then rebuilds from the whole log)
        return last_id if type(last_id) is int and 0 <= last_id <= MAX_INT else 0

    async def since(self, after_id: int, limit: int = 1000, wait_seconds: float = 0.0) -> pa.Table:
        """Committed events after `after_id`; with `wait_seconds`, wait that long for new ones."""
        if wait_seconds and self.log.last_id <= after_id:
            try:
                await asyncio.wait_for(self._committed.wait(), wait_seconds)
            except TimeoutError:
                pass
        async with self._files:
            return await asyncio.to_thread(self.log.since, after_id, limit)

    async def last_id(self) -> int:
        return self.log.last_id

    async def status(self) -> dict:
        return {"last_id": self.log.last_id, "failure": self.failure, "time": time.time(), "pid": os.getpid()}

    async def close(self) -> None:
        async with self._files:
            await asyncio.to_thread(self.log.close)


class EventLogHandle:
    """How the registry (appends) and the gateway (status, Watch) reach the log actor.

    Finds the actor by name (again after it was restarted), presents Solo's control secret on every
    call (see solo/security/control.py) and turns Ray's errors into Solo's.
    """

    def __init__(self, namespace: str, control_secret: str):
        self.namespace = namespace
        self.control_secret = control_secret
        self._actor = None

    async def _call(self, method: str, *args, why: str = "retry shortly"):
        actor = self._actor or find_event_log(self.namespace)
        if actor is None:
            raise Unavailable(f"the event log is not running; {why}")
        self._actor = actor
        try:
            return await getattr(actor, method).remote(self.control_secret, *args)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, SoloError):
                raise exc.cause from None
            raise Unavailable(f"the event log failed ({exc.cause!r}); {why}") from None
        except ray.exceptions.RayActorError:
            self._actor = None
            raise Unavailable(f"the event log is unavailable (restarting?); {why}") from None

    async def append(self, rows) -> tuple[int, int]:
        """Durably append `rows`; a bulk group is turned into columns here, in the producer's process,
        so neither pickling nor the sequencer pays per-row Python for it."""
        if isinstance(rows, list) and len(rows) >= COLUMNAR_FROM_ROWS and not any("cause_index" in r for r in rows):
            try:
                check_group(rows)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
            rows = to_columns(rows)
        return await self._call("append", rows, why="the operation was not recorded and did not happen")

    async def status(self) -> dict:
        return await self._call("status")

    async def set_retention(self, days: float, max_bytes: int, tenant_days: dict, check_seconds: float) -> dict:
        return await self._call("set_retention", days, max_bytes, tenant_days, check_seconds)

    async def retention(self) -> dict:
        return await self._call("retention")

    async def since(self, after_id: int, limit: int, wait_seconds: float) -> pa.Table:
        return await self._call("since", after_id, limit, wait_seconds)


def get_or_create_event_log(directory: Path, namespace: str, events_config=None, scheduling_strategy=None,
                            checkpoint_file: Path | None = None, *, control_secret: str,
                            reloaded_file: Path | None = None):
    """The detached event-log actor (created on first start); `events_config` is [events] of the config;
    retention keeps the events after the registry checkpoint in `checkpoint_file`. Every call to it
    takes `control_secret` first (solo/security/control.py)."""
    from solo.config import EventsConfig
    c = events_config or EventsConfig()
    actor_cls = ray.remote(gated(EventLogActor, "event log"))
    handle = actor_cls.options(
        name=EVENT_LOG_NAME, namespace=namespace, lifetime="detached", get_if_exists=True, num_cpus=0,
        max_concurrency=10_000, max_restarts=-1, max_task_retries=0, scheduling_strategy=scheduling_strategy,
    ).remote(control_secret, str(directory), c.roll_seconds, c.roll_rows, c.compact_below_rows, c.retention_days,
             c.retention_bytes, dict(c.tenant_retention_days), c.retention_check_seconds,
             str(checkpoint_file) if checkpoint_file else None, str(reloaded_file) if reloaded_file else None)
    ray.get(handle.last_id.remote(control_secret))
    return handle


def find_event_log(namespace: str):
    try:
        return ray.get_actor(EVENT_LOG_NAME, namespace=namespace)
    except ValueError:
        return None


__all__ = ["EVENT_LOG_NAME", "EventLogActor", "EventLogHandle", "find_event_log", "get_or_create_event_log"]
