"""The Gateway servicer: convert the request, make one core call, convert the result."""
from __future__ import annotations

import asyncio
import contextlib
import time

from solo import metrics
from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from solo.config import SoloConfig
from solo.core.dispatch import Dispatcher
from solo.core.spec import VERSION_RE, ServiceSpec, check_egress, validate_labels, validate_name
from solo.errors import InvalidRequest, NotFound, Overloaded, PermissionDenied, SoloError
from solo.gateway import events
from solo.gateway.admission import Admission
from solo.gateway.audit import Audit
from solo.gateway.breaker import FAILURE_CODES, Breakers
from solo.gateway.config_rpc import ConfigRpcs
from solo.gateway.convert import info_to_proto, spec_from_proto
from solo.gateway.logs_rpc import LogsRpcs
from solo.gateway.routes import RouteFollower
from solo.gateway.secrets_rpc import SecretsRpcs
from solo.gateway.status import request_id, rpc
from solo.gateway.streams import StreamSlots
from solo.gateway.tokens import TokenService
from solo.gateway.validation import SpecValidator
from solo.registry.quotas import quota_for
from solo.security.capabilities import Request
from solo.security.ratelimit import FailureBudget, Rate, RateLimiter
from solo.security.tokens import Authenticator, Principal


def _on(operation: str, service=lambda r: "", method=lambda r: ""):
    """What an RPC needs its token to allow: an operation, on a service and method of the request."""
    return lambda r: Request(operation, service(r), method(r))


def _input(request: pb.InvokeRequest) -> tuple[str | None, bytes | None]:
    which = request.WhichOneof("input")
    return (request.json, None) if which == "json" else (None, request.raw) if which == "raw" else (None, None)


def _output(result) -> pb.InvokeResponse:
    return pb.InvokeResponse(raw=result.raw) if result.HasField("raw") else pb.InvokeResponse(json=result.json)


def _check_call(request: pb.InvokeRequest) -> None:
    owner, _, name = request.service.rpartition("/")
    if owner:
        try:
            validate_name(owner)
            validate_name(name)
        except InvalidRequest:
            raise InvalidRequest(f"invalid service name {request.service!r}: name one of your services ('kv') or "
                                 "one another tenant granted you ('<owner>/kv')") from None
    validate_name(name)
    if not request.method.isidentifier() or request.method.startswith("_"):
        raise InvalidRequest(f"invalid method name {request.method!r}: call a public method of the service")


class GatewayServicer(LogsRpcs, SecretsRpcs, ConfigRpcs, solo_pb2_grpc.GatewayServicer):
    def __init__(self, config: SoloConfig, registry, authenticator: Authenticator, routes: RouteFollower,
                 dispatcher: Dispatcher, event_feed: events.EventFeed, tokens: TokenService, audit: Audit,
                 limiter: RateLimiter, group=None):
        self.config = config
        self.group = group  # a gateway.group.Member when several gateway processes share the port
        self.registry = registry
        self.authenticator = authenticator
        self.tokens = tokens
        self.audit = audit
        self.limiter = limiter
        limits = config.limits
        self.auth_failures = FailureBudget(Rate(limits.auth_failures_per_second,
                                                limits.auth_failures_burst or 2 * limits.auth_failures_per_second))
        self.breakers = Breakers(limits.breaker_failures, limits.breaker_open_seconds,
                                 on_change=self._breaker_changed)
        metrics.BREAKERS_OPEN.watch(self.breakers, self._breaker_live)
        self.admission = Admission(lambda tenant: quota_for(config, tenant).max_concurrent_calls,
                                   limits.service_queue_limit, limits.max_in_flight, limits.adaptive_in_flight,
                                   limits.min_in_flight, limits.hold_ignored_refusals)
        metrics.IN_FLIGHT_LIMIT.set_function(lambda: self.admission.current_limit)
        self.routes = routes
        self.dispatcher = dispatcher
        self.events = event_feed
        self.metrics = metrics.CallSeries()
        self.validator = SpecValidator()
        self.watchers = StreamSlots("Watch streams", config.events.max_watchers, config.events.watchers_per_tenant,
                                    "[events] max_watchers", "[events] watchers_per_tenant")

    def _admit(self, tenant: str, service: str, route, method: str = ""):
        """Admission for one call to `service` ("<owner>/<name>"); a shed call is counted for `calls.shed` and in
        solo_gateway_shed_total."""
        try:
            return self.admission.admit(tenant, service, route.concurrency if route else 1, route is not None,
                                        method)
        except Overloaded as exc:
            shown = service.split("/", 1)[1] if service.startswith(f"{tenant}/") else service
            reason = getattr(exc, "reason", "shed")
            self.audit.shed(tenant, shown, reason)
            metrics.SHED.labels(tenant, metrics.shed_reason(reason)).inc()
            raise

    def _breaker_live(self, key: tuple) -> bool:
        """Is breaker `key` (caller, service as called, version) of the version the route table has now?"""
        tenant, service, version = key
        owner, _, name = service.rpartition("/")
        route = self.dispatcher.routes.get(owner or tenant, name)
        return route is not None and route.version == version

    def _breaker_changed(self, key: tuple, state: str, reason: str) -> None:
        """A caller's breaker of a service version changed state: an event (audit) and a count."""
        metrics.breaker_changed(key[0], key[1], state)
        self.audit.breaker(key, state, reason)

    def _target(self, tenant: str, service: str):
        """(owner, name, route) of a call: the caller's own service, or "<owner>/<name>" that its owner
        granted to the caller. Anything else is answered like a service that does not exist."""
        owner, _, name = service.rpartition("/")
        owner = owner or tenant
        route = self.dispatcher.routes.get(owner, name)
        if owner != tenant and (route is None or tenant not in route.grants):
            raise NotFound(f"service {service!r} not found; check the name (and, for another tenant's service, "
                           "that its owner granted it to you: solo grant)")
        return owner, name, route

    @staticmethod
    def _who(principal: Principal, context) -> dict:
        """Who asked, for the events: the principal's label and the request id (x-request-id or new)."""
        return {"principal": principal.label, "request_id": request_id(context.invocation_metadata() or ())}

    @rpc(_on("deploy", lambda r: r.spec.name))
    async def DeployService(self, request, context, principal):
        spec = await self.validator.validate(spec_from_proto(request.spec), self.config.limits,
                                             self.config.runtime.default_num_cpus)
        check_egress(spec, principal.tenant, self.config.runtime.tenant_egress)
        await self._check_spec_secrets(principal, context, spec.secrets)
        result = await self.registry.deploy(principal.tenant, spec, request.replace, self._who(principal, context))
        await self.routes.synced(result["route_version"])
        return pb.DeployServiceResponse(service=info_to_proto(result["service"]), changed=result["changed"])

    @rpc(_on("discover", lambda r: r.name))
    async def GetService(self, request, context, principal):
        validate_name(request.name)
        return info_to_proto(await self.registry.get(principal.tenant, request.name))

    @rpc(_on("discover"))
    async def ListServices(self, request, context, principal):
        for info in await self.registry.list(principal.tenant):
            yield info_to_proto(info)

    @rpc(_on("stop", lambda r: r.name))
    async def StopService(self, request, context, principal):
        validate_name(request.name)
        result = await self.registry.stop(principal.tenant, request.name, request.remove, self._who(principal, context))
        await self.routes.synced(result["route_version"])
        return pb.StopServiceResponse(service=info_to_proto(result["service"]))

    @rpc(_on("swap", lambda r: r.name))
    async def SwapService(self, request, context, principal):
        most = self.config.swap.max_watch_seconds
        if request.HasField("watch_seconds") and not 0 <= request.watch_seconds <= most:
            raise InvalidRequest(f"watch_seconds must be between 0 and {most:g} ([swap] max_watch_seconds), not "
                                 f"{request.watch_seconds:g}")
        spec = await self.validator.validate(
            ServiceSpec(name=request.name, source=request.source, filename=request.filename,
                        class_name=request.class_name, version=request.version),
            self.config.limits, self.config.runtime.default_num_cpus)
        # the new code gets the service's secrets: the token must be allowed to read them (the registry refuses
        # the swap if, under its lock, the service names others)
        keys = await self.registry.secret_keys(principal.tenant, spec.name)
        await self._check_spec_secrets(principal, context, keys, must_exist=False)
        result = await self.registry.swap(principal.tenant, spec.name, spec.source, spec.filename, spec.class_name,
                                          spec.version,
                                          request.watch_seconds if request.HasField("watch_seconds") else None,
                                          self._who(principal, context), keys)
        await self.routes.synced(result["route_version"])
        return pb.SwapServiceResponse(service=info_to_proto(result["service"]),
                                      previous_version=result["previous_version"], state=result["state"],
                                      mode=result["mode"], watch_seconds=result["watch_seconds"],
                                      switch_seconds=result["switch_seconds"])

    @rpc(_on("swap", lambda r: r.name))
    async def RollbackService(self, request, context, principal):
        validate_name(request.name)
        if request.to_version and not VERSION_RE.fullmatch(request.to_version):
            raise InvalidRequest(f"invalid version {request.to_version!r}: use up to 64 letters, digits, "
                                 "'.', '_', '+', '-'")
        # the version rolled back to gets its secrets' newest values: checked like a swap
        keys = await self.registry.rollback_secret_keys(principal.tenant, request.name, request.to_version)
        await self._check_spec_secrets(principal, context, keys, must_exist=False)
        result = await self.registry.rollback(principal.tenant, request.name, request.to_version,
                                              self._who(principal, context), keys)
        await self.routes.synced(result["route_version"])
        return pb.RollbackServiceResponse(service=info_to_proto(result["service"]),
                                          from_version=result["from_version"], state=result["state"],
                                          reason=result["reason"])

    @rpc(_on("deploy", lambda r: r.name))
    async def RegisterService(self, request, context, principal):
        validate_name(request.name)
        if len(request.address) > 256 or len(request.instance_id) > 64 or \
                not all(c.isalnum() or c in "-_." for c in request.instance_id):
            raise InvalidRequest("address is at most 256 characters; instance_id is the id RegisterService returned "
                                 "(at most 64 letters, digits, '-', '_', '.')")
        if len(request.labels) > 16:
            raise InvalidRequest(f"a registration has at most 16 labels, not {len(request.labels)}")
        if request.version and not VERSION_RE.fullmatch(request.version):
            raise InvalidRequest(f"invalid version {request.version!r}: use up to 64 letters, digits, "
                                 "'.', '_', '+', '-'")
        validate_labels(dict(request.labels))
        result = await self.registry.register(principal.tenant, request.name, request.instance_id, request.version,
                                              request.address, dict(request.labels), request.ttl_seconds,
                                              self._who(principal, context))
        return pb.RegisterServiceResponse(instance_id=result["instance_id"], expires_at=result["expires_at"])

    @rpc(_on("deploy", lambda r: r.name))
    async def DeregisterService(self, request, context, principal):
        validate_name(request.name)
        if not request.instance_id or len(request.instance_id) > 64:
            raise InvalidRequest("instance_id is required (the id RegisterService returned), at most 64 characters")
        await self.registry.deregister(principal.tenant, request.name, request.instance_id,
                                       self._who(principal, context))
        return pb.DeregisterServiceResponse()

    @rpc(_on("discover", lambda r: r.name))
    async def DiscoverService(self, request, context, principal):
        if request.name:
            validate_name(request.name)
        if request.owner:
            validate_name(request.owner, "tenant name")
        validate_labels(dict(request.labels))
        found = await self.registry.discover(principal.tenant, request.owner, request.name, dict(request.labels))
        return pb.DiscoverServiceResponse(endpoints=[pb.Endpoint(**e) for e in found])

    @rpc(_on("deploy", lambda r: r.name))
    async def GrantService(self, request, context, principal):
        validate_name(request.name)
        validate_name(request.to_tenant, "tenant name")
        call = self.registry.revoke_grant if request.revoke else self.registry.grant
        result = await call(principal.tenant, request.name, request.to_tenant, self._who(principal, context))
        await self.routes.synced(result["route_version"])
        return pb.GrantServiceResponse()

    @rpc(_on("discover"))
    async def ListGrants(self, request, context, principal):
        result = await self.registry.grants(principal.tenant)
        return pb.ListGrantsResponse(
            given=[pb.Grant(owner=principal.tenant, service=g["service"], to_tenant=g["to_tenant"])
                   for g in result["given"]],
            received=[pb.Grant(owner=g["owner"], service=g["service"], to_tenant=principal.tenant)
                      for g in result["received"]])

    @rpc(_on("invoke", lambda r: r.service, lambda r: r.method))
    async def Invoke(self, request, context, principal):
        try:
            return await self._invoke(request, context, principal)
        except Overloaded as exc:  # (after the call's metrics and breaker are recorded)
            await self.admission.hold(exc, context.time_remaining(), request.ByteSize())
            raise

    async def _invoke(self, request, context, principal):
        with self._call(request, context, principal) as (owner, name, json_text, raw):
            result = await self.dispatcher.invoke(owner, name, request.method, json_text, raw,
                                                  context.time_remaining())
            return _output(result)

    @contextlib.contextmanager
    def _call(self, request, context, principal):
        """What Invoke and InvokeStream do around forwarding: check the request, find its target, record its
        metrics and breaker outcome, admit it; yields (owner, name, json_text, raw)."""
        _check_call(request)
        json_text, raw = _input(request)
        tenant, service = principal.tenant, request.service
        owner, name, route = self._target(tenant, service)
        with self._observed(tenant, service, route, context, request.method) as breaker, \
                self._admit(tenant, f"{owner}/{name}", route, request.method):
            if breaker is not None:
                self.breakers.before(breaker)
            yield owner, name, json_text, raw

    @contextlib.contextmanager
    def _observed(self, tenant: str, service: str, route, context, method: str = ""):
        """One call's metrics and its caller's breaker (Invoke and InvokeStream alike); yields the breaker's
        key, None when the service is not running. The duration is labelled with `method` only when the route
        lists it (else "other"), so callers cannot make label values up."""
        # metrics only for services that exist, so label values stay bounded
        series = self.metrics.get(tenant, service) if route else None
        start = time.perf_counter()
        code, error = "OK", ""
        if series:
            series.in_flight.inc()
        # per caller: another tenant's failing or impatient calls must not open the owner's breaker
        breaker = (tenant, service, route.version) if route is not None and route.state == "RUNNING" else None
        try:
            yield breaker
        except SoloError as exc:
            code, error = exc.code, exc.message
            raise
        except (asyncio.CancelledError, GeneratorExit):
            remaining = context.time_remaining()
            code = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0.05 else "CANCELLED"
            error = "the call timed out" if code == "DEADLINE_EXCEEDED" else ""
            raise
        finally:
            if series:
                series.done(code, time.perf_counter() - start, method, route.methods)
            if breaker is not None and "circuit breaker is open" not in error and code != "RESOURCE_EXHAUSTED":
                self.breakers.record(breaker, code in FAILURE_CODES, error)

    @rpc(_on("invoke", lambda r: r.service, lambda r: r.method))
    async def InvokeStream(self, request, context, principal):
        try:
            async for item in self._stream(request, context, principal):
                yield item
        except Overloaded as exc:  # (refused before its first message, after its metrics are recorded)
            await self.admission.hold(exc, context.time_remaining(), request.ByteSize())
            raise

    async def _stream(self, request, context, principal):
        with self._call(request, context, principal) as (owner, name, json_text, raw):
            stream = self.dispatcher.stream(owner, name, request.method, json_text, raw, context.time_remaining())
            async for result in stream:
                yield _output(result)

    @rpc(_on("discover"))
    async def GetMetrics(self, request, context, principal):
        # this process's series of the tenant, read without collecting every tenant's histograms (microseconds per
        # series: a tenant cannot make the gateway burn CPU by asking); several processes: summed, reused for 1 s
        summary = metrics.tenant_summary(principal.tenant) if self.group is None \
            else await self.group.summary(principal.tenant)
        services = [pb.ServiceMetrics(service=name, calls=int(v["calls"]), errors=int(v["errors"]),
                                      in_flight=max(0, int(v["in_flight"])),
                                      latency_seconds_sum=v["latency_seconds_sum"])
                    for name, v in sorted(summary.items())]
        return pb.GetMetricsResponse(tenant=principal.tenant, services=services,
                                     calls=sum(s.calls for s in services), errors=sum(s.errors for s in services))

    @rpc(_on("mint"))
    async def MintToken(self, request, context, principal):
        minted, rights = await self.tokens.mint(principal, context.invocation_metadata() or (), request.tenant,
                                        list(request.rights), request.ttl_seconds, request.operator,
                                        request.description, self._who(principal, context))
        return pb.MintTokenResponse(token=minted.token, tenant=request.tenant, revocation_id=minted.revocation_id,
                                    expires_at=minted.expires_at, key_id=minted.key_id, rights=rights)

    @rpc(_on("mint"))
    async def RevokeToken(self, request, context, principal):
        revocation_id, tenant = await self.tokens.revoke(principal, request.revocation_id, request.token,
                                                         request.reason, self._who(principal, context))
        return pb.RevokeTokenResponse(revocation_id=revocation_id, tenant=tenant)

    @rpc(_on("mint"))
    async def ListTokens(self, request, context, principal):
        if request.tenant and request.tenant != principal.tenant and not principal.operator:
            raise PermissionDenied("a tenant can only list its own tokens; leave the tenant empty")
        tenant = request.tenant or (None if principal.operator else principal.tenant)
        found = await asyncio.to_thread(self.tokens.list, tenant, principal.operator)
        return pb.ListTokensResponse(tokens=[pb.TokenInfo(**t) for t in found])

    @rpc(_on("read_events"))
    async def QueryEvents(self, request, context, principal):
        wanted, limit = events.scope(principal, request.filter), events.page_size(request.limit)
        table = await asyncio.to_thread(events.query, self.config.data_dir, wanted)
        page = table.slice(0, limit).to_pylist()
        more = table.num_rows > limit
        return pb.QueryEventsResponse(events=[events.to_proto(r) for r in page], more=more,
                                      next_after_id=page[-1]["id"] if page else request.filter.after_id)

    @rpc(_on("watch"))
    async def Watch(self, request, context, principal):
        wanted = events.scope(principal, request.filter)
        with self.watchers.slot(principal.tenant):  # bounded: a Watch never ends by itself
            await self._watch(wanted, context)

    async def _watch(self, wanted, context):
        cursor = delivered = wanted.after_id
        while True:
            table = await self.events.since(cursor, 1000, self.config.events.watch_poll_seconds)
            # still allowed? (a revocation is itself an event, so this runs right after one)
            self.authenticator.authenticate(context.invocation_metadata() or (), Request("watch"), context)
            if not table.num_rows:
                continue
            cursor = table["id"][-1].as_py()
            for row in events.select(table, wanted).to_pylist():
                try:
                    await asyncio.wait_for(context.write(events.to_proto(row)),
                                           self.config.events.watch_slow_consumer_seconds)
                except TimeoutError:
                    raise Overloaded(f"the watcher did not keep up (no progress in "
                                     f"{self.config.events.watch_slow_consumer_seconds:g}s); resume with "
                                     f"after_id set to the last id you received (at least {delivered})") from None
                delivered = row["id"]

    @rpc(_on("whoami"))
    async def WhoAmI(self, request, context, principal):
        return pb.WhoAmIResponse(tenant=principal.tenant, operator=principal.operator, token_id=principal.token_id)


__all__ = ["GatewayServicer"]
