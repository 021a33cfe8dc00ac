"""Composition root of the gateway: the gRPC server with the Solo, health and reflection services."""
from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from solo import metrics
from solo._proto import solo_pb2, solo_pb2_grpc
from solo.config import SoloConfig
from solo.core.dispatch import Dispatcher
from solo.core.routes import RouteTable
from solo.errors import FailedPrecondition
from solo.gateway.audit import Audit
from solo.gateway.config_rpc import LiveConfig
from solo.gateway.group import Member, per_process
from solo.gateway.health import Health, follow
from solo.gateway.metrics_http import MetricsServer, read_token
from solo.gateway.routes import RouteFollower
from solo.gateway.servicer import GatewayServicer
from solo.gateway.status import lenient_deserializer
from solo.gateway.tokens import TokenService
from solo.gateway.usage import poll_usage, usage_poll
from solo.gateway.validation import SpecValidator
from solo.rest.server import RestServer, rest_server
from solo.security.node_tls import NodeTls
from solo.security.ratelimit import Rate, RateLimiter
from solo.security.tokens import CapabilityAuthenticator

SERVICE_NAME = solo_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


@dataclass
class Gateway:
    server: grpc.aio.Server
    port: int
    follower: RouteFollower
    dispatcher: Dispatcher
    health: HealthServicer
    event_log_watcher: asyncio.Task | None = None
    metrics_port: int = 0  # where /metrics is served (0 = off)
    tasks: tuple[asyncio.Task, ...] = ()  # revocations followed from the log, audit flushes
    validator: SpecValidator | None = None  # its worker process, if one was started
    metrics_server: MetricsServer | None = None
    group: Member | None = None  # with [gateway] processes > 1: this process's place in the group
    internal_metrics: MetricsServer | None = None  # this process's own series, for the group (loopback, token)
    health_state: Health | None = None  # liveness and readiness (/health, /ready, grpc health): gateway/health.py
    rest: RestServer | None = None  # the REST/JSON gateway over the same servicer (solo/rest), process 0 only

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 1.0) -> None:
        if self.health_state is not None:
            self.health_state.drain()
        await self.health.enter_graceful_shutdown()
        if self.group is not None:
            self.group.ready(False)
        if self.rest is not None:
            await self.rest.stop()
        if self.event_log_watcher is not None:
            self.event_log_watcher.cancel()
        for task in self.tasks:
            task.cancel()
        await self.follower.stop()
        await self.server.stop(grace)
        await self.dispatcher.close()
        if self.validator is not None:
            self.validator.close()
        for server in (self.metrics_server, self.internal_metrics):
            if server is not None:
                server.close()


async def start_gateway(config: SoloConfig, registry, authenticator: CapabilityAuthenticator,
                        event_feed=None, group: Member | None = None, live: LiveConfig | None = None) -> Gateway:
    """The gateway of this process. With `group` (one of [gateway] processes > 1, gateway/group.py) it binds
    its port with SO_REUSEPORT, enforces its share of the rates and call quotas, publishes its route
    version, and serves its own series on an internal loopback endpoint; process 0 serves /metrics for all.
    `live` (the caller keeps it for SIGHUP) follows the config in force; by default one with nothing to reload."""
    config = per_process(config, group.index if group is not None else 0)
    tokens = TokenService(config.data_dir, authenticator, event_feed)
    follow_from = await tokens.load_revocations()  # a revoked token is refused from the first call on
    audit = Audit(event_feed)
    authenticator.verifier.on_first_seen = audit.first_seen
    table = RouteTable()
    dispatcher = Dispatcher(table, moved_wait=config.swap.drain_seconds + 5.0,
                            tls=NodeTls.load(config.tls.hosts, config.node_tls_dir, where="the gateway's node"))
    state = Health(event_log=event_feed is not None)
    follower = RouteFollower(registry, table, dispatcher, group=group, health=state)
    state.stale_after = max(state.stale_after, 3 * follower.poll_seconds)
    await follower.start()
    size = config.gateway.max_message_bytes
    server = grpc.aio.server(options=[("grpc.max_send_message_length", size),
                                      ("grpc.max_receive_message_length", size),
                                      ("grpc.so_reuseport", 1 if group is not None else 0)])
    servicer = GatewayServicer(config, registry, authenticator, follower, dispatcher, event_feed, tokens, audit,
                               rate_limiter(config), group)
    add_gateway_servicer(servicer, server)
    servicer.live_config = live = live or LiveConfig(registry, group=group)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    where = f"{config.gateway.host}:{config.gateway.port}"
    try:
        port = server.add_secure_port(where, tls_credentials(config)) if config.tls.enabled \
            else server.add_insecure_port(where)
    except RuntimeError:
        port = 0
    if port == 0:
        raise FailedPrecondition(f"the gateway cannot listen on {where}: the port is in use or the address is not "
                                 "this machine's; pick another with --port (0 = any free port) or --host")
    await live.attach(servicer, rate_limiter)  # a reload's values before the first call (gateway/config_rpc.py)
    internal = None
    if group is not None:
        internal = MetricsServer("127.0.0.1", 0, group.token, summary=metrics.tenant_summary)
        group.joined(internal.address[1])
    state.beat()  # the route table's first load may have taken long (a registry rebuilding): not a wedged loop
    metrics_server = start_metrics(config, group, state)  # before serving: an unreadable token file stops the start
    if event_feed is not None:
        await _check_event_log(event_feed, state)  # so the first health answer already knows
    rest = rest_server(config, servicer, group, state)  # bound before serving: a port in use stops the start
    await server.start()
    if rest is not None:
        await rest.start()
    watcher = asyncio.create_task(_watch_event_log(event_feed, state)) if event_feed is not None else None
    tasks = (asyncio.create_task(tokens.follow_revocations(follow_from)), asyncio.create_task(audit.run())) \
        if event_feed is not None else ()

    async def publish(ready: bool) -> None:  # grpc health follows readiness: NOT_SERVING while not ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
    ready = state.readiness().ok
    await publish(ready)
    metrics.READY.set(int(ready))
    tasks += (asyncio.create_task(follow(state, publish, ready, each=lambda now: metrics.READY.set(int(now)))),)
    if usage_poll(config, group):
        tasks += (asyncio.create_task(poll_usage(registry, config.gateway.usage_poll_seconds)),)
    tasks += (live.task,)
    if group is not None:
        group.ready()
    return Gateway(server, port, follower, dispatcher, health_servicer, watcher,
                   metrics_server.address[1] if metrics_server else 0, tasks, servicer.validator, metrics_server,
                   group, internal, state, rest)


def settle_collector() -> None:
    """After a gateway process has started: long-lived start-up objects leave the collector's view, and
    collections stay small and frequent (Python's default thresholds): grpc.aio leaves a little cyclic garbage on
    every call, and a gen0 threshold of 20,000 made each collection a 7-19 ms pause of the event loop; at 700
    they stay under 1 ms and the throughput is the same (bench/RESULTS.md, overload notes)."""
    gc.freeze()
    gc.set_threshold(700, 10, 10)


def start_metrics(config: SoloConfig, group: Member | None = None, health: Health | None = None) -> MetricsServer | None:
    """/metrics on [gateway] metrics_host (loopback by default), behind metrics_token_file if set, and /health and
    /ready (no token); None when off. Of several gateway processes only process 0 serves it, with every process's
    series (and its own health)."""
    gw = config.gateway
    if not gw.metrics_port or (group is not None and group.index != 0):
        return None
    return MetricsServer(gw.metrics_host, max(0, gw.metrics_port), read_token(gw.metrics_token_file),
                         group.merged_metrics if group is not None else None, health=health)


def add_gateway_servicer(servicer: solo_pb2_grpc.GatewayServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_GatewayServicer_to_server, for every RPC of the proto's Gateway service, but
    a request whose bytes do not parse reaches the handler as an Undecodable (answered INVALID_ARGUMENT),
    where grpc would answer UNKNOWN "Unexpected DecodeError"."""
    handlers = {}
    for method in solo_pb2.DESCRIPTOR.services_by_name["Gateway"].methods:
        if method.client_streaming:
            raise TypeError(f"{method.full_name}: client streaming RPCs are not served")
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(getattr(servicer, method.name),
                                     request_deserializer=lenient_deserializer(getattr(solo_pb2,
                                                                                       method.input_type.name)),
                                     response_serializer=getattr(solo_pb2, method.output_type.name).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def tls_credentials(config: SoloConfig) -> grpc.ServerCredentials:
    """The gateway's certificate from [tls] dir; with require_client_cert, only clients of that CA."""
    directory = config.tls_dir
    files = {name: directory / name for name in ("server.crt", "server.key", "ca.crt")}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FailedPrecondition(f"TLS is on but {', '.join(missing)} is missing: run `solo certs init` "
                                 f"(or `solo up --tls`, which does it) or point [tls] dir at your files")
    return grpc.ssl_server_credentials([(files["server.key"].read_bytes(), files["server.crt"].read_bytes())],
                                       root_certificates=files["ca.crt"].read_bytes(),
                                       require_client_auth=config.tls.require_client_cert)


def rate_limiter(config: SoloConfig) -> RateLimiter:
    """Per-token buckets from [limits]; a burst of 0 means two seconds' worth of the rate."""
    limits = config.limits

    def rate(per_second: float, burst: float) -> Rate:
        return Rate(per_second, burst or max(1.0, 2 * per_second))
    return RateLimiter(rate(limits.token_rate_per_second, limits.token_burst),
                       {t: rate(r.rate_per_second, r.burst) for t, r in limits.tenant_token_rates.items()},
                       tenant_default=rate(limits.tenant_rate_per_second, limits.tenant_burst),
                       tenant_rates={t: rate(r.rate_per_second, r.burst) for t, r in limits.tenant_rates.items()})


async def _check_event_log(feed, health: Health, timeout: float = 10.0) -> None:
    """Whether the event log can be written (operations fail closed when it cannot): exported and told to
    `health`."""
    try:
        status = await asyncio.wait_for(feed.status(), timeout)
    except Exception:  # noqa: BLE001 - down, restarting or hung: not writable
        metrics.EVENT_LOG_WRITABLE.set(0)
        health.event_log_status(answered=False)
        return
    metrics.EVENT_LOG_WRITABLE.set(0 if status["failure"] else 1)
    metrics.EVENT_LOG_LAST_ID.set(status["last_id"])
    health.event_log_status(answered=True, writable=not status["failure"])


async def _watch_event_log(feed, health: Health, every: float = 5.0) -> None:
    while True:
        await asyncio.sleep(every)
        await _check_event_log(feed, health)
