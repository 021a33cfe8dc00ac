"""SoloClient (sync) and AsyncSoloClient (asyncio): typed clients over the gateway's gRPC stubs.

    from solo import SoloClient
    with SoloClient() as solo:                      # address and token from `solo up`'s data dir
        solo.deploy("examples/counter.py")
        solo.call("counter", "incr", by=2)          # -> 2
        for item in solo.stream("ticker", "ticks", n=3): ...

Address and token come from the arguments, else SOLO_ADDRESS / SOLO_TOKEN, else the data dir
written by `solo up` (SOLO_DATA_DIR or ~/.solo). Errors are raised as `solo.SoloError` subclasses.
"""
from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from solo.config import DEFAULT_DATA_DIR
from solo.core.payload import decode_result, encode_args
from solo.errors import InvalidRequest, SoloError, Unavailable, from_code
from solo.gateway.status import ERROR_HEADER, EXCEPTION_HEADER, RETRY_AFTER_HEADER, STATUS_BY_CODE

_CODE_BY_STATUS = {status: code for code, status in reversed(STATUS_BY_CODE.items())}
_CODE_BY_STATUS[grpc.StatusCode.UNKNOWN] = "SERVICE_FAILED"
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def resolve_target(address: str | None, token: str | None, data_dir: str | Path | None) -> tuple[str, str]:
    directory = Path(data_dir or os.environ.get("SOLO_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    state = directory / "solo.json"
    address = address or os.environ.get("SOLO_ADDRESS")
    token = token or os.environ.get("SOLO_TOKEN")
    if (not address or not token) and state.exists():
        info = json.loads(state.read_text())
        address = address or info["address"]
        # the local operator token goes only to the local Solo, never to an address given elsewhere
        if not token and address == info["address"] and Path(info["operator_token_file"]).exists():
            token = Path(info["operator_token_file"]).read_text().strip()
    if not address:
        raise Unavailable(f"no Solo to talk to: run `solo up`, or pass --address / set SOLO_ADDRESS "
                          f"(looked for {state})")
    return address, token or ""


def translate(exc: grpc.RpcError) -> SoloError:
    trailers = dict(exc.trailing_metadata() or ())
    code = trailers.get(ERROR_HEADER) or _CODE_BY_STATUS.get(exc.code(), "UNKNOWN")
    if exc.code() == grpc.StatusCode.UNAVAILABLE and ERROR_HEADER not in trailers:
        return Unavailable(f"cannot reach the Solo gateway: {exc.details()}")
    error = from_code(code, exc.details() or exc.code().name, trailers.get(EXCEPTION_HEADER, ""))
    if trailers.get(RETRY_AFTER_HEADER, "").isdigit():
        error.retry_after = int(trailers[RETRY_AFTER_HEADER]) / 1000  # seconds to wait before retrying
    return error


def register_request(name: str, address: str, version: str, labels: Mapping[str, str] | None, ttl_seconds: float,
                     instance_id: str) -> pb.RegisterServiceRequest:
    return pb.RegisterServiceRequest(name=name, address=address, version=version, labels=dict(labels or {}),
                                     ttl_seconds=ttl_seconds, instance_id=instance_id)


def grants_dict(response: pb.ListGrantsResponse) -> dict:
    return {"given": [{"service": g.service, "to_tenant": g.to_tenant} for g in response.given],
            "received": [{"owner": g.owner, "service": g.service} for g in response.received]}


def swap_request(name: str, source: str | Path, *, filename: str | None = None, version: str = "",
                 class_name: str = "", watch_seconds: float | None = None) -> pb.SwapServiceRequest:
    """A SwapServiceRequest from a path or source text (the service `name` is always given)."""
    spec = spec_message(source, name, filename=filename, version=version, class_name=class_name)
    request = pb.SwapServiceRequest(name=name, source=spec.source, filename=spec.filename, version=version,
                                    class_name=class_name)
    if watch_seconds is not None:
        request.watch_seconds = watch_seconds
    return request


def spec_message(source: str | Path, name: str | None = None, *, filename: str | None = None, version: str = "",
                 class_name: str = "", num_cpus: float = 0.0, num_gpus: float = 0.0, memory: int = 0,
                 resources: Mapping[str, float] | None = None, env: Mapping[str, str] | None = None,
                 config: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None,
                 max_concurrency: int = 0, max_restarts: int | None = None,
                 allow_egress: Sequence[str] = (), secrets: Sequence[str] = ()) -> pb.ServiceSpec:
    """A ServiceSpec from a path (or source text with `name`): the name defaults to the file's stem.
    `allow_egress`: "host:port" TCP destinations the service may open (the operator must allow them).
    `secrets`: vault keys handed to the service at start as self.context.secrets[key]."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith(".py")):
        path = Path(source)
        if not path.exists():
            raise InvalidRequest(f"{path} does not exist; pass the path of the service's Python file")
        filename, source, name = filename or path.name, path.read_text(), name or path.stem.replace("_", "-")
    if not name:
        raise InvalidRequest("name the service (name=...) when deploying source text")
    spec = pb.ServiceSpec(
        name=name, source=source, filename=filename or f"{name}.py", version=version, class_name=class_name,
        resources=pb.Resources(num_cpus=num_cpus, num_gpus=num_gpus, memory_bytes=memory, custom=dict(resources or {})),
        env=dict(env or {}), config_json=json.dumps(dict(config)) if config else "", labels=dict(labels or {}),
        max_concurrency=max_concurrency, allow_egress=list(allow_egress), secrets=list(secrets))
    if max_restarts is not None:
        spec.max_restarts = max_restarts
    return spec


def invoke_request(service: str, method: str, args: tuple, kwargs: dict) -> pb.InvokeRequest:
    json_text, raw = encode_args(*args, **kwargs)
    if raw is not None:
        return pb.InvokeRequest(service=service, method=method, raw=raw)
    return pb.InvokeRequest(service=service, method=method, json=json_text or "")


def result_value(response: pb.InvokeResponse) -> Any:
    which = response.WhichOneof("output")
    return decode_result(response.json if which == "json" else None, response.raw if which == "raw" else None)


def event_filter(tenant: str = "", types=(), subject: str = "", since: float = 0.0, until: float = 0.0,
                 after_id: int = 0) -> pb.EventFilter:
    """since/until are unix seconds."""
    return pb.EventFilter(tenant=tenant, types=list(types), subject=subject, since_us=int(since * 1_000_000),
                          until_us=int(until * 1_000_000), after_id=after_id)


def event_dict(event: pb.Event) -> dict:
    row = to_dict(event)
    row["id"], row["time_us"], row["causation_id"] = event.id, event.time_us, event.causation_id
    row["payload"] = json.loads(row.pop("payload_json") or "{}")
    return row


class EventPages:
    """The paging of QueryEvents, shared by both clients: requests until `limit` or the end."""

    def __init__(self, limit: int, **filters):
        self.limit, self.filter, self.found, self.more = limit, event_filter(**filters), [], True

    def next_request(self) -> pb.QueryEventsRequest | None:
        if not self.more or len(self.found) >= self.limit:
            return None
        return pb.QueryEventsRequest(filter=self.filter, limit=min(1000, self.limit - len(self.found)))

    def take(self, page: pb.QueryEventsResponse) -> None:
        self.found.extend(event_dict(e) for e in page.events)
        self.more = page.more
        self.filter.after_id = page.next_after_id


def to_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def tls_credentials(data_dir: str | Path | None, ca: str | Path | None, cert: str | Path | None,
                    key: str | Path | None) -> grpc.ChannelCredentials | None:
    """TLS for the channel: files from the arguments, else SOLO_TLS_CA / SOLO_TLS_CERT / SOLO_TLS_KEY,
    else the CA a local `solo up --tls` recorded in solo.json; None means plaintext."""
    ca = ca or os.environ.get("SOLO_TLS_CA")
    cert, key = cert or os.environ.get("SOLO_TLS_CERT"), key or os.environ.get("SOLO_TLS_KEY")
    if not ca:  # a local `solo up --tls`: its CA (and with mutual TLS the operator's client certificate)
        state = Path(data_dir or os.environ.get("SOLO_DATA_DIR") or DEFAULT_DATA_DIR).expanduser() / "solo.json"
        if state.exists():
            info = json.loads(state.read_text())
            ca = info.get("tls_ca") or None
            if ca and not cert and info.get("tls_cert") and Path(info["tls_cert"]).exists():
                cert, key = info["tls_cert"], info["tls_key"]
    if bool(cert) != bool(key):
        raise InvalidRequest("a client certificate needs both files: tls_cert and tls_key (SOLO_TLS_CERT, SOLO_TLS_KEY)")
    if not ca and not cert:
        return None
    try:
        read = lambda p: Path(p).expanduser().read_bytes() if p else None  # noqa: E731
        return grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    except OSError as exc:
        raise InvalidRequest(f"cannot read a TLS file: {exc}") from None


class _Base:
    def __init__(self, address: str | None = None, token: str | None = None, *, data_dir: str | Path | None = None,
                 timeout: float | None = 60.0, tls_ca: str | Path | None = None, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None):
        self.address, self.token = resolve_target(address, token, data_dir)
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        self.credentials = tls_credentials(data_dir, tls_ca, tls_cert, tls_key)


class SoloClient(_Base):
    """Blocking client. Every method raises a `solo.SoloError` subclass on failure."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.channel = grpc.secure_channel(self.address, self.credentials, options=CHANNEL_OPTIONS) \
            if self.credentials else grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = solo_pb2_grpc.GatewayStub(self.channel)

    def _rpc(self, method, request, timeout: float | None = None):
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def deploy(self, source: str | Path, name: str | None = None, *, replace: bool = False, **spec) -> dict:
        request = pb.DeployServiceRequest(spec=spec_message(source, name, **spec), replace=replace)
        return to_dict(self._rpc("DeployService", request, timeout=max(self.timeout or 0, 300)).service)

    # -- the vault (secrets of the caller's tenant) --
    def put_secret(self, key: str, value: bytes | str) -> dict:
        """Store a new version of `key`; returns {"key", "version"}."""
        value = value.encode() if isinstance(value, str) else value
        return to_dict(self._rpc("PutSecret", pb.PutSecretRequest(key=key, value=value)))

    def get_secret(self, key: str, version: int = 0) -> dict:
        """{"key", "version", "value" (bytes), "created_at"}: the newest version, or `version`."""
        response = self._rpc("GetSecret", pb.GetSecretRequest(key=key, version=version))
        return {"key": response.key, "version": response.version, "value": response.value,
                "created_at": response.created_at}

    def list_secrets(self, prefix: str = "") -> list[dict]:
        return [to_dict(s) for s in self._rpc("ListSecrets", pb.ListSecretsRequest(prefix=prefix)).secrets]

    def delete_secret(self, key: str) -> int:
        """Remove every version of `key`; returns how many were removed."""
        return self._rpc("DeleteSecret", pb.DeleteSecretRequest(key=key)).versions

    def rotate_master_key(self) -> dict:
        """Operator only: a new master key for the vault; returns {"key_id", "rewrapped"}."""
        return to_dict(self._rpc("RotateMasterKey", pb.RotateMasterKeyRequest()))

    def call(self, service: str, method: str, *args: Any, _timeout: float | None = None, **kwargs: Any) -> Any:
        return result_value(self._rpc("Invoke", invoke_request(service, method, args, kwargs), _timeout))

    def stream(self, service: str, method: str, *args: Any, _timeout: float | None = None, **kwargs: Any) -> Iterator:
        responses = self.stub.InvokeStream(invoke_request(service, method, args, kwargs), metadata=self.metadata,
                                           timeout=_timeout)
        try:
            for response in responses:
                yield result_value(response)
        except grpc.RpcError as exc:
            raise translate(exc) from None
        finally:
            responses.cancel()

    def get(self, name: str) -> dict:
        return to_dict(self._rpc("GetService", pb.GetServiceRequest(name=name)))

    def list(self) -> list[dict]:
        try:
            return [to_dict(m) for m in self.stub.ListServices(pb.ListServicesRequest(), metadata=self.metadata,
                                                                 timeout=self.timeout)]
        except grpc.RpcError as exc:
            raise translate(exc) from None

    def stop(self, name: str, remove: bool = False) -> dict:
        return to_dict(self._rpc("StopService", pb.StopServiceRequest(name=name, remove=remove)).service)

    def swap(self, name: str, source: str | Path, **options) -> dict:
        """Hot-swap `name` to new code (a path or source text; options: version, class_name, filename,
        watch_seconds). Returns service, previous_version, state, mode, watch_seconds, switch_seconds."""
        return to_dict(self._rpc("SwapService", swap_request(name, source, **options),
                                 timeout=max(self.timeout or 0, 300)))

    def rollback(self, name: str, to_version: str = "") -> dict:
        """Back to the previous version (or `to_version`). Returns service, from_version, state, reason."""
        return to_dict(self._rpc("RollbackService", pb.RollbackServiceRequest(name=name, to_version=to_version),
                                 timeout=max(self.timeout or 0, 300)))

    def register(self, name: str, *, address: str = "", version: str = "", labels: Mapping[str, str] | None = None,
                 ttl_seconds: float = 30.0, instance_id: str = "") -> dict:
        """Register an endpoint (or heartbeat it: pass the returned instance_id). Returns instance_id, expires_at."""
        return to_dict(self._rpc("RegisterService", register_request(name, address, version, labels, ttl_seconds,
                                                                     instance_id)))

    def deregister(self, name: str, instance_id: str) -> None:
        self._rpc("DeregisterService", pb.DeregisterServiceRequest(name=name, instance_id=instance_id))

    def discover(self, name: str = "", *, owner: str = "", labels: Mapping[str, str] | None = None) -> list[dict]:
        """Endpoints this tenant may see: its services and registrations (and `owner`'s exported services)."""
        response = self._rpc("DiscoverService", pb.DiscoverServiceRequest(name=name, owner=owner,
                                                                          labels=dict(labels or {})))
        return [to_dict(e) for e in response.endpoints]

    def grant(self, name: str, to_tenant: str) -> None:
        """Export service `name` to `to_tenant`, which may then discover and call it as "<owner>/<name>"."""
        self._rpc("GrantService", pb.GrantServiceRequest(name=name, to_tenant=to_tenant))

    def revoke_grant(self, name: str, to_tenant: str) -> None:
        self._rpc("GrantService", pb.GrantServiceRequest(name=name, to_tenant=to_tenant, revoke=True))

    def grants(self) -> dict:
        """{"given": [{service, to_tenant}], "received": [{owner, service}]}."""
        return grants_dict(self._rpc("ListGrants", pb.ListGrantsRequest()))

    def metrics(self) -> dict:
        return to_dict(self._rpc("GetMetrics", pb.GetMetricsRequest()))

    def mint_token(self, tenant: str, description: str = "", **options) -> str:
        """A new token for `tenant` (options: rights=[...], ttl_seconds=, operator=)."""
        return self.mint(tenant, description, **options)["token"]

    def mint(self, tenant: str, description: str = "", *, rights=(), ttl_seconds: float = 0,
             operator: bool = False) -> dict:
        """Mint and return token, revocation_id, expires_at, key_id and rights."""
        return to_dict(self._rpc("MintToken", pb.MintTokenRequest(
            tenant=tenant, description=description, rights=list(rights), ttl_seconds=ttl_seconds, operator=operator)))

    def revoke_token(self, revocation_id: str = "", *, token: str = "", reason: str = "") -> dict:
        return to_dict(self._rpc("RevokeToken", pb.RevokeTokenRequest(revocation_id=revocation_id, token=token,
                                                                       reason=reason)))

    def list_tokens(self, tenant: str = "") -> list[dict]:
        return [to_dict(t) for t in self._rpc("ListTokens", pb.ListTokensRequest(tenant=tenant)).tokens]

    def whoami(self) -> dict:
        return to_dict(self._rpc("WhoAmI", pb.WhoAmIRequest()))

    # -- the configuration (operator) --
    def config(self) -> dict:
        """The configuration in force: {"toml", "path" (the file it was loaded from), "loaded_at"}."""
        answer = self._rpc("GetConfig", pb.GetConfigRequest())
        return {"toml": answer.toml, "path": answer.path, "loaded_at": answer.loaded_at}

    def reload_config(self) -> dict:
        """Load the config file again and apply what can change live: {"changed", "needs_restart", "loaded_at"}."""
        answer = self._rpc("ReloadConfig", pb.ReloadConfigRequest(), timeout=max(self.timeout or 0, 60))
        return {"changed": list(answer.changed), "needs_restart": list(answer.needs_restart),
                "loaded_at": answer.loaded_at}

    def events(self, *, limit: int = 1000, **filters) -> list[dict]:
        """Events oldest first (filters: tenant, types, subject, since, until, after_id), all pages up to limit."""
        pages = EventPages(limit, **filters)
        while (request := pages.next_request()) is not None:
            pages.take(self._rpc("QueryEvents", request))
        return pages.found

    def logs(self, name: str, *, follow: bool = False, since_seconds: float = 0.0, tail: int = 0) -> Iterator[dict]:
        """A service's kept output, oldest first: {"time", "stream" (stdout, stderr, solo), "version", "text"};
        with follow, then new lines as they come (until the iterator is closed)."""
        responses = self.stub.Logs(pb.LogsRequest(name=name, follow=follow, since_seconds=since_seconds, tail=tail),
                                   metadata=self.metadata)
        try:
            for line in responses:
                yield {"time": line.time, "stream": line.stream, "version": line.version, "text": line.text}
        except grpc.RpcError as exc:
            raise translate(exc) from None
        finally:
            responses.cancel()

    def watch(self, **filters) -> Iterator[dict]:
        """Catch up from after_id, then follow new events as they are committed."""
        responses = self.stub.Watch(pb.WatchRequest(filter=event_filter(**filters)), metadata=self.metadata)
        try:
            for event in responses:
                yield event_dict(event)
        except grpc.RpcError as exc:
            raise translate(exc) from None
        finally:
            responses.cancel()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SoloClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncSoloClient(_Base):
    """The same API for asyncio: `await client.call(...)`, `async for x in client.stream(...)`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.channel = grpc.aio.secure_channel(self.address, self.credentials, options=CHANNEL_OPTIONS) \
            if self.credentials else grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = solo_pb2_grpc.GatewayStub(self.channel)

    async def _rpc(self, method, request, timeout: float | None = None):
        try:
            return await getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise translate(exc) from None

    async def deploy(self, source: str | Path, name: str | None = None, *, replace: bool = False, **spec) -> dict:
        request = pb.DeployServiceRequest(spec=spec_message(source, name, **spec), replace=replace)
        return to_dict((await self._rpc("DeployService", request, timeout=max(self.timeout or 0, 300))).service)

    async def call(self, service: str, method: str, *args: Any, _timeout: float | None = None, **kwargs: Any) -> Any:
        return result_value(await self._rpc("Invoke", invoke_request(service, method, args, kwargs), _timeout))

    async def stream(self, service: str, method: str, *args: Any, _timeout: float | None = None,
                     **kwargs: Any) -> AsyncIterator:
        call = self.stub.InvokeStream(invoke_request(service, method, args, kwargs), metadata=self.metadata,
                                      timeout=_timeout)
        try:
            async for response in call:
                yield result_value(response)
        except grpc.RpcError as exc:
            raise translate(exc) from None
        finally:
            call.cancel()

    async def get(self, name: str) -> dict:
        return to_dict(await self._rpc("GetService", pb.GetServiceRequest(name=name)))

    async def list(self) -> list[dict]:
        try:
            return [to_dict(m) async for m in self.stub.ListServices(pb.ListServicesRequest(), metadata=self.metadata,
                                                                       timeout=self.timeout)]
        except grpc.RpcError as exc:
            raise translate(exc) from None

    async def stop(self, name: str, remove: bool = False) -> dict:
        return to_dict((await self._rpc("StopService", pb.StopServiceRequest(name=name, remove=remove))).service)

    async def swap(self, name: str, source: str | Path, **options) -> dict:
        return to_dict(await self._rpc("SwapService", swap_request(name, source, **options),
                                       timeout=max(self.timeout or 0, 300)))

    async def rollback(self, name: str, to_version: str = "") -> dict:
        return to_dict(await self._rpc("RollbackService",
                                       pb.RollbackServiceRequest(name=name, to_version=to_version),
                                       timeout=max(self.timeout or 0, 300)))

    async def register(self, name: str, *, address: str = "", version: str = "",
                       labels: Mapping[str, str] | None = None, ttl_seconds: float = 30.0,
                       instance_id: str = "") -> dict:
        return to_dict(await self._rpc("RegisterService", register_request(name, address, version, labels,
                                                                           ttl_seconds, instance_id)))

    async def deregister(self, name: str, instance_id: str) -> None:
        await self._rpc("DeregisterService", pb.DeregisterServiceRequest(name=name, instance_id=instance_id))

    async def discover(self, name: str = "", *, owner: str = "",
                       labels: Mapping[str, str] | None = None) -> list[dict]:
        response = await self._rpc("DiscoverService", pb.DiscoverServiceRequest(name=name, owner=owner,
                                                                                labels=dict(labels or {})))
        return [to_dict(e) for e in response.endpoints]

    async def grant(self, name: str, to_tenant: str) -> None:
        await self._rpc("GrantService", pb.GrantServiceRequest(name=name, to_tenant=to_tenant))

    async def revoke_grant(self, name: str, to_tenant: str) -> None:
        await self._rpc("GrantService", pb.GrantServiceRequest(name=name, to_tenant=to_tenant, revoke=True))

    async def grants(self) -> dict:
        return grants_dict(await self._rpc("ListGrants", pb.ListGrantsRequest()))

    async def metrics(self) -> dict:
        return to_dict(await self._rpc("GetMetrics", pb.GetMetricsRequest()))

    async def mint_token(self, tenant: str, description: str = "", **options) -> str:
        return (await self.mint(tenant, description, **options))["token"]

    async def mint(self, tenant: str, description: str = "", *, rights=(), ttl_seconds: float = 0,
                   operator: bool = False) -> dict:
        return to_dict(await self._rpc("MintToken", pb.MintTokenRequest(
            tenant=tenant, description=description, rights=list(rights), ttl_seconds=ttl_seconds, operator=operator)))

    async def revoke_token(self, revocation_id: str = "", *, token: str = "", reason: str = "") -> dict:
        return to_dict(await self._rpc("RevokeToken", pb.RevokeTokenRequest(revocation_id=revocation_id, token=token,
                                                                             reason=reason)))

    async def list_tokens(self, tenant: str = "") -> list[dict]:
        return [to_dict(t) for t in (await self._rpc("ListTokens", pb.ListTokensRequest(tenant=tenant))).tokens]

    async def whoami(self) -> dict:
        return to_dict(await self._rpc("WhoAmI", pb.WhoAmIRequest()))

    async def events(self, *, limit: int = 1000, **filters) -> list[dict]:
        pages = EventPages(limit, **filters)
        while (request := pages.next_request()) is not None:
            pages.take(await self._rpc("QueryEvents", request))
        return pages.found

    async def watch(self, **filters) -> AsyncIterator[dict]:
        call = self.stub.Watch(pb.WatchRequest(filter=event_filter(**filters)), metadata=self.metadata)
        try:
            async for event in call:
                yield event_dict(event)
        except grpc.RpcError as exc:
            raise translate(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncSoloClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
