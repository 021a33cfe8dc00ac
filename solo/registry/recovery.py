"""How a registry comes back: the checkpoint (events folded since the last one), and at start every service
the event log says should run, its host taken over if it still runs (a registry restart) or started again
(Solo restarted); hosts nobody owns are removed. Part of RegistryActor (actor.py)."""
from __future__ import annotations

import asyncio
import copy
import logging

from solo.errors import SoloError, Unavailable
from solo.events.readback import with_seconds
from solo.events.reader import read_events
from solo.registry.rebuild import CHECKPOINT_FILE, fold, load_checkpoint, load_grants, write_checkpoint
from solo.registry.state import Placement, ServiceRecord
from solo.runtime import limits
from solo.runtime.launcher import call_host

log = logging.getLogger("solo.registry")


def placement_of(answer: dict, key: str) -> Placement:
    """Where a host runs, from its answer to `load` or `describe` and its key (opened: actor._host_key)."""
    return Placement(address=answer["address"], key=key, pid=answer["pid"], node_id=answer["node_id"],
                     node_ip=answer["node_ip"], started_at=answer["started_at"], methods=tuple(answer["methods"]),
                     class_name=answer["class_name"], host=answer["host"], limits=answer.get("limits", ""))


class RecoveryMixin:
    async def _rebuild(self) -> None:
        """Every service the event log says should run comes back: its host taken over if it still
        runs (a registry restart), else started again (Solo restarted). Stray hosts are removed."""
        views = await asyncio.to_thread(self._checkpoint)
        for owner, name, grantee in self._grants:
            self.discovery.grants.setdefault((owner, name), set()).add(grantee)
        self._spawn(self._checkpoint_loop())
        self._spawn(self._expiry_loop())
        self._spawn(self._snapshot_loop())
        strays = set(self.launcher.host_names())
        for view in [copy.copy(v) for v in views.values()]:  # the checkpoint loop folds into views
            record = self.state.restore(view, self.specs.get(view.spec, view.tenant, view.name))
            if record.state != "RESTARTING":
                continue
            info = await asyncio.to_thread(self.snapshot_files.info, record.tenant, record.name)
            if info is not None:  # kept only for this run (the same generation and restart count, see state)
                self.state.snapshots[record.key] = info
            if view.moving:  # its node was lost and it had not run again: moved on, with its snapshot
                self._spawn(self._reschedule(record, view.moving))
            elif await self._reattach(record, view):
                strays.discard(view.host)
            else:
                self._spawn(self._recover(record))
        for name in strays:
            self.launcher.kill_named(name)
        await self._commit()
        try:  # nothing else runs yet: every service's folder keeps only what it needs
            await asyncio.to_thread(self.specs.sweep, await asyncio.to_thread(self._needed_specs))
            await asyncio.to_thread(self.snapshot_files.sweep, set(self.state.snapshots))
        except OSError as exc:
            log.warning("sweeping the specs or snapshots folder failed: %s", exc)

    def _checkpoint(self) -> dict:
        """Fold the events after the last checkpoint into it and write it (in a worker thread):
        the next rebuild then reads only what came later."""
        data_dir = self.config.data_dir
        if self._views is None:
            self._checkpoint_id, self._views = load_checkpoint(data_dir)
            self._grants = load_grants(data_dir)
        table = read_events(data_dir, min_id=self._checkpoint_id + 1)
        if table.num_rows or not (data_dir / CHECKPOINT_FILE).exists():
            # time as float seconds: cheaper than datetimes, and no forged time can fail the read
            rows = with_seconds(table).select(["id", "time", "tenant", "type", "subject", "payload"]).to_pylist()
            self._views = fold(rows, self._views, self._grants)
            self._checkpoint_id = rows[-1]["id"] if rows else self._checkpoint_id
            write_checkpoint(data_dir, self._checkpoint_id, self._views, self._grants)
        return self._views

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.events.checkpoint_seconds)
            try:
                await asyncio.to_thread(self._checkpoint)
            except Exception:  # noqa: BLE001 - a later round retries; the rebuild just reads more
                log.exception("writing the registry checkpoint failed")
            await asyncio.to_thread(limits.sweep)  # cgroups of hosts that are gone (this node)

    async def _reattach(self, record: ServiceRecord, view) -> bool:
        handle = self.launcher.find(view.host) if view.host else None
        if handle is None:
            return False
        try:
            found = await call_host(handle.describe.remote(), 5.0, "taking over a host")
        except SoloError:
            return False
        if not found or found["pid"] != view.pid:
            return False
        try:
            key = self._host_key(found["key"])
        except Unavailable as exc:  # sealed to another key (registry.seal replaced): start it again instead
            log.warning("cannot take over the host of %s/%s: %s", record.tenant, record.name, exc)
            return False
        try:  # a registry that died in the middle of a swap may have left it frozen
            await call_host(handle.thaw.remote(), 5.0, "resuming a taken-over host")
        except SoloError:
            pass
        self.state.started(record, placement_of(found, key), recovered="reattached")
        self.hosts[record.key] = handle
        self._spawn(self._watch(record.tenant, record.name, record.generation, found["pid"], handle))
        return True

    async def _recover(self, record: ServiceRecord) -> None:
        async with self._lock(record.key):
            if self.state.services.get(record.key) is not record or record.state != "RESTARTING":
                return
            self.state.snapshots.pop(record.key, None)  # it comes back fresh: an older state is not for it
            try:
                await self._start(record, recovered="started again")
            except SoloError as exc:
                self.state.start_failed(record, f"recovery failed: {exc.message}", replacing=False)
            await self._commit()
