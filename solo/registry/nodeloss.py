"""Node loss, the registry actor's part (mixed into RegistryActor).

A host whose node died did nothing wrong, so its service is not restarted under the crash policy
(backoff, `max_restarts`): it is rescheduled. When a host's watcher sees it gone, the registry asks
whether its node is gone too (Ray names the cause, `... its node has died`; else the node's Alive
state in `ray.nodes()`). If so, every service RUNNING on that node becomes RESTARTING at once (one
`node.lost` per tenant affected, naming only that tenant's services), and each is started again on a
surviving node, its last periodic snapshot (snapshots.py) handed to restore() when this run of the
service has one (`service.rescheduled`). A host that Ray cannot reach but whose node is still alive
is watched on: it may still run, and is not replaced on a guess.
"""
from __future__ import annotations

import asyncio
import logging
import time

import ray
from ray.exceptions import ActorUnavailableError

from solo.errors import SoloError
from solo.registry.state import ServiceRecord
from solo.runtime.launcher import call_host

log = logging.getLogger("solo.registry")
UNREACHABLE_SECONDS = 120.0  # a host unreachable this long while Ray still says its node is alive: a crash
RETRY_SECONDS = 2.0  # between checks of an unreachable host's node


def node_alive(node_id: str) -> bool:
    """Whether Ray's control store lists the node as alive (a node it no longer lists is gone)."""
    return any(n.get("NodeID") == node_id and n.get("Alive") for n in ray.nodes())


def says_node_died(exc: BaseException) -> bool:
    return "node has died" in str(exc) or bool(getattr(exc, "preempted", False))


def node_death(exc: BaseException) -> str:
    """Why the node went, in Solo's own fixed words (tenants see it in `node.lost`): Ray's text about the
    death can name the cluster's pods, hosts or paths, so it is only read for the cause, never passed on."""
    log.info("a host's node is gone; Ray says: %s", " ".join(str(exc).split())[:1000])  # operators only
    text = str(exc).lower()
    if getattr(exc, "preempted", False) or "preempt" in text:
        return "the node was preempted"
    if any(word in text for word in ("drain", "autoscal", "idle", "terminated", "removed", "shut down", "shutdown")):
        return "the node was removed"
    return "the node stopped answering"


class NodeLossMixin:
    """Needs the actor's state, hosts, pool, standby, launcher, _lock, _commit, _spawn, _crashed, _watch."""

    async def _wait_closed(self, handle, node_id: str):
        """`handle.wait_closed()`, riding out Ray's "actor unavailable" (the host cannot be reached, and may
        still run) while its node is alive; raises once the host is known gone, or after UNREACHABLE_SECONDS."""
        unreachable_since = None
        while True:
            asked = time.monotonic()
            try:
                return await handle.wait_closed.remote()
            except ActorUnavailableError:
                now = time.monotonic()
                if unreachable_since is None or now - asked > 10 * RETRY_SECONDS:
                    unreachable_since = asked  # it was reachable in between: a new episode
                if not node_id or not await asyncio.to_thread(node_alive, node_id):
                    raise
                if now - unreachable_since > UNREACHABLE_SECONDS:
                    raise
                await asyncio.sleep(RETRY_SECONDS)

    async def _node_gone(self, node_id: str, exc: BaseException) -> bool:
        """Whether a host died because its node did."""
        if says_node_died(exc):
            return True
        if not node_id:
            return False
        try:
            return not await asyncio.to_thread(node_alive, node_id)
        except Exception as error:  # noqa: BLE001 - the control store is unreachable: treat it as a crash
            log.warning("could not ask Ray whether node %s is alive: %s", node_id[:12], error)
            return False

    async def _node_lost(self, tenant: str, name: str, generation: int, pid: int, node_id: str, node_ip: str,
                         why: str) -> None:
        """A host on `node_id` died with its node: every service RUNNING there is rescheduled."""
        reason = f"node {node_id[:12]} ({node_ip}) was lost: {why}"
        standby = self.standby.get((tenant, name))
        if standby is not None and standby.new_generation == generation:
            # in a swap's watch window: back to the kept version (if it is alive), as after any crash
            await self._crashed(tenant, name, generation, pid, reason)
        lost = self.state.node_lost(node_id, node_ip, reason, skip=lambda r: r.key in self.standby)
        alive = [(h, p) for h, p in self.pool if p.get("node_id") != node_id]
        if len(alive) < len(self.pool):  # warm hosts that died with the node are not handed out
            self.pool[:] = alive
            self._spawn(self._fill_pool())
        if not lost:
            return  # the node was handled already (another of its hosts reported first)
        log.warning("node %s (%s) was lost; rescheduling %d service(s)", node_id[:12], node_ip, len(lost))
        for record in lost:
            self.hosts.pop(record.key, None)
        await self._commit()
        for record in lost:
            self._spawn(self._reschedule(record, node_id))

    async def _reschedule(self, record: ServiceRecord, from_node: str) -> None:
        """Start a service moved off a lost node on a surviving one (Ray places it), with its last snapshot."""
        async with self._lock(record.key):
            if self.state.services.get(record.key) is not record or record.state != "RESTARTING":
                return  # stopped, replaced or removed meanwhile
            text, taken_at = await self._snapshot_text(record)
            try:
                handle, placement = await self._load_host(record)
            except SoloError as exc:
                self.state.reschedule_failed(record, f"{exc.message}; deploy it again once the cluster has room")
                await self._commit()
                return
            note = "fresh: no snapshot of this run of the service was kept"
            if text is not None:
                try:
                    restored = await call_host(handle.restore.remote(text), self.config.runtime.start_timeout_seconds,
                                               "restoring the last snapshot")
                    await self._check_health(handle, "the rescheduled service")
                    note = ("restored from the last snapshot" if restored
                            else "fresh: the service has no restore()")
                except SoloError as exc:  # maybe half restored: a clean fresh start instead
                    self.launcher.kill(handle)
                    try:
                        handle, placement = await self._load_host(record)
                    except SoloError as again:
                        self.state.reschedule_failed(record, again.message)
                        await self._commit()
                        return
                    note = f"fresh: restoring the last snapshot failed ({exc.message})"
                    taken_at = None
            age = None if taken_at is None else self.state.clock() - taken_at
            if self.state.rescheduled(record, placement, from_node, note, age) is None:
                self.launcher.kill(handle)
                await self._commit()
                return
            self.hosts[record.key] = handle
            self._spawn(self._watch(record.tenant, record.name, record.generation, placement.pid, handle))
            await self._commit()
