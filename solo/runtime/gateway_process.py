"""One extra gateway process of `solo up` with `[gateway] processes = N` (process 1 .. N-1).

The supervisor starts it (`python -m solo.runtime.gateway_process`) with what it needs on stdin as JSON:
the config, its index, the port, Ray's address, the control secret and the group's internal token. It is a
Ray driver on the head node in Solo's namespace: it finds the registry and the event log by name and
builds the same gateway as the supervisor's own (solo/gateway/server.py), on the same port with
SO_REUSEPORT. It follows the routes, the revocations (from the event log) and the root keys (from
`<data-dir>/keys`) by itself. It exits on SIGTERM, and by itself when the supervisor is gone.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

import ray

from solo.config import SoloConfig, loop_factory
from solo.config_reload import ConfigSource
from solo.gateway.config_rpc import LiveConfig
from solo.gateway.group import GROUP_FILE, GroupFile, Member
from solo.gateway.server import settle_collector, start_gateway
from solo.registry.handle import RegistryHandle, find_registry
from solo.runtime.event_log_actor import EventLogHandle
from solo.security.keys import KeyRing
from solo.security.tokens import authenticator

log = logging.getLogger("solo")


async def serve(config: SoloConfig, index: int, secret: str, internal_token: str, parent: int,
                source: ConfigSource | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning(  # (a HUP to the whole group must not end it)
        "gateway process %d ignores SIGHUP: send it to the `solo up` process (pid %d) to reload", index, parent))
    actor = find_registry(config.namespace)
    if actor is None:
        raise SystemExit(f"gateway process {index}: no registry in namespace {config.namespace!r}")
    group = Member(GroupFile(config.data_dir / GROUP_FILE), index, config.gateway.processes, internal_token)
    gateway = await start_gateway(config, RegistryHandle(actor, secret),
                                  authenticator(config, KeyRing(config.data_dir / "keys")),
                                  EventLogHandle(config.namespace, secret), group,
                                  LiveConfig(RegistryHandle(actor, secret), source, group))
    settle_collector()
    log.info("gateway process %d (pid %d) serves %s:%d", index, os.getpid(), config.gateway.host, gateway.port)
    while not stop.is_set():
        if os.getppid() != parent:  # the supervisor is gone (killed): nobody would stop us
            log.warning("gateway process %d: the supervisor (pid %d) is gone; stopping", index, parent)
            break
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    await gateway.stop()


def main() -> int:
    spec = json.loads(sys.stdin.read())
    index = int(spec["index"])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s gateway-{index} %(levelname)s %(name)s: %(message)s")
    config = SoloConfig.model_validate(spec["config"])
    config = config.model_copy(update={"gateway": config.gateway.model_copy(update={"port": int(spec["port"])})})
    ray.init(address=spec["ray_address"], namespace=config.namespace, log_to_driver=False,
             configure_logging=False)
    try:
        with asyncio.Runner(loop_factory=loop_factory(config.gateway.event_loop)) as runner:
            runner.run(serve(config, index, spec["control_secret"], spec["internal_token"], int(spec["parent"]),
                             ConfigSource.from_json(spec.get("config_source"))))
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
