"""The REST gateway's pure parts (no Ray, no network): where it listens, the status table, the context's
reading of what a handler answered, and the message conversions."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from solo.config import load_config
from solo.errors import ERRORS_BY_CODE, InvalidRequest, NotFound, Overloaded, ServiceFailed
from solo.gateway.status import STATUS_BY_CODE, answer_with, rpc
from solo.rest import messages
from solo.rest.context import END, RestContext, Stream, unary
from solo.rest.errors import HTTP_STATUS_BY_CODE
from solo.rest.server import rest_address, rest_server
from solo.security.capabilities import Request


def test_where_rest_listens(tmp_path):
    def config(**overrides):
        return load_config(None, data_dir=str(tmp_path), **overrides)
    assert rest_address(config()) == ("127.0.0.1", 7080)
    assert rest_address(config(gateway__port=0)) == ("127.0.0.1", 0)  # tests, several Solos on one machine
    assert rest_address(config(rest__port=8081, gateway__host="0.0.0.0")) == ("0.0.0.0", 8081)
    assert rest_address(config(rest__port=0, rest__host="::1")) == ("::1", 0)
    assert rest_address(config(rest__port=-1)) is None
    # of several gateway processes only process 0 serves REST (its port is not shared)
    assert rest_server(config(rest__port=0), servicer=None, group=SimpleNamespace(index=1)) is None


def test_every_code_has_an_http_status():
    assert set(STATUS_BY_CODE) <= set(HTTP_STATUS_BY_CODE)
    assert set(ERRORS_BY_CODE) <= set(HTTP_STATUS_BY_CODE)
    assert all(400 <= status < 600 for status in HTTP_STATUS_BY_CODE.values())
    assert HTTP_STATUS_BY_CODE["SERVICE_FAILED"] == 502 and HTTP_STATUS_BY_CODE["RESOURCE_EXHAUSTED"] == 429


@pytest.mark.parametrize("error", [NotFound("no such service 'x'"), InvalidRequest("bad"),
                                   ServiceFailed("KeyError: 'k'", exception_type="KeyError")])
def test_the_context_reads_back_what_answer_with_set(error):
    context = RestContext((), "ipv4:127.0.0.1:5")
    answer_with(context, error)
    seen = context.error()
    assert (type(seen), seen.code, seen.message, seen.exception_type) == \
        (type(error), error.code, error.message, error.exception_type)


def test_retry_after_survives_the_trailers():
    refusal = Overloaded("slow down")
    refusal.retry_after = 0.25
    context = RestContext((), "")
    answer_with(context, refusal)
    assert context.error().retry_after == 0.25


class _Servicer(solo_pb2_grpc.GatewayServicer):
    """A servicer with the gRPC `rpc` wrapper's own authentication, over tiny fakes."""

    def __init__(self):
        from solo.security.ratelimit import FailureBudget, Rate
        self.auth_failures = FailureBudget(Rate(100, 100))
        self.authenticator = SimpleNamespace(known_good=lambda m, w: False, authenticate=self._authenticate)
        self.audit = SimpleNamespace(denied=lambda exc, wanted: None)
        self.limiter = SimpleNamespace(take=lambda tenant, token: None)

    @staticmethod
    def _authenticate(metadata, wanted, context):
        from solo.errors import Unauthenticated
        if dict(metadata).get("authorization") != "Bearer good":
            raise Unauthenticated("no credentials")
        return SimpleNamespace(tenant="t", revocation_ids=("r",))

    @rpc(lambda r: Request("whoami"))
    async def WhoAmI(self, request, context, principal):
        return pb.WhoAmIResponse(tenant=principal.tenant)

    @rpc(lambda r: Request("discover"))
    async def ListServices(self, request, context, principal):
        for name in ("a", "b"):
            yield pb.ServiceInfo(name=name)
        raise NotFound("gone")


def test_unary_and_stream_through_the_rpc_wrapper():
    async def scenario():
        servicer = _Servicer()
        good = RestContext((("authorization", "Bearer good"),), "ipv4:127.0.0.1:1")
        assert (await unary(servicer, "WhoAmI", pb.WhoAmIRequest(), good)).tenant == "t"
        with pytest.raises(Exception) as refused:
            await unary(servicer, "WhoAmI", pb.WhoAmIRequest(), RestContext((), "ipv4:127.0.0.1:1"))
        assert refused.value.code == "UNAUTHENTICATED"
        stream = Stream(servicer, "ListServices", pb.ListServicesRequest(), good)
        names = []
        while (item := await stream.next()) is not END:
            names.append(item.name)
        assert names == ["a", "b"] and stream.error().code == "NOT_FOUND"
        with pytest.raises(Exception) as missing:  # an RPC this servicer has no handler for
            await unary(servicer, "GetConfig", pb.GetConfigRequest(), good)
        assert missing.value.code == "UNIMPLEMENTED"
    asyncio.run(scenario())


def test_messages_to_and_from_json():
    event = pb.Event(id=2**60, time_us=-5, payload_json="{}")
    out = messages.to_dict(event)
    assert out["id"] == 2**60 and out["time_us"] == -5  # numbers, not protobuf's strings
    assert messages.to_dict(pb.InvokeResponse(raw=b"\x00\x01")) == {"raw": "AAE="}
    assert "max_restarts" not in messages.to_dict(pb.ServiceSpec())  # an unset optional is left out
    request = messages.from_dict({"filter": {"after_id": 7, "types": ["a"]}, "limit": 3}, pb.QueryEventsRequest)
    assert request.filter.after_id == 7 and request.limit == 3
    for bad in ({"limit": -1}, {"limit": 2**32}, {"nosuch": 1}, {"limit": "ten"}):
        with pytest.raises(InvalidRequest):
            messages.from_dict(bad, pb.QueryEventsRequest)
    field = messages.field_at(pb.QueryEventsRequest.DESCRIPTOR, "filter.types")
    assert messages.query_value(field, ["a", "b"], "types") == ["a", "b"]
    labels = pb.DiscoverServiceRequest.DESCRIPTOR.fields_by_name["labels"]
    assert messages.query_value(labels, ["zone=a", "tier=x=y"], "labels") == {"zone": "a", "tier": "x=y"}
    with pytest.raises(InvalidRequest, match="key=value"):
        messages.query_value(labels, ["zone"], "labels")
    limit = pb.QueryEventsRequest.DESCRIPTOR.fields_by_name["limit"]
    with pytest.raises(InvalidRequest, match="given 2 times"):
        messages.query_value(limit, ["1", "2"], "limit")


def test_the_body_budget_bounds_what_all_requests_hold_together():
    from solo.rest.app import BodyBudget
    budget = BodyBudget(100)
    first, second = [0], [0]
    budget.take(60, first)
    budget.take(30, second)
    with pytest.raises(Overloaded, match="max_body_bytes_in_flight") as refused:
        budget.take(20, second)
    assert refused.value.retry_after == 1.0 and budget.held == 90
    budget.give_back(first)
    budget.take(20, second)
    budget.give_back(second)
    assert budget.held == 0 and first == second == [0]


def _asgi(servicer, **kw):
    import httpx

    from solo.rest.app import build_app
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(servicer, **kw)), base_url="http://t")


GOOD = {"Authorization": "Bearer good"}


@pytest.mark.parametrize("method,url,kw", [
    ("POST", "/v1/services/x/methods/m", {"content": "9" * 5000, "headers": {"content-type": "application/json"}}),
    ("PUT", "/v1/secrets/db", {"content": '{"value": ' + "9" * 5000 + "}"}),
    ("POST", "/v1/tokens", {"content": '{"ttl_seconds": ' + "1" * 4301 + "}"}),
    ("POST", "/v1/services", {"content": "[" * 5000 + "]" * 5000}),
    ("GET", "/v1/events:watch", {"headers": {"last-event-id": b"\xb2"}}),  # '²': isdigit(), not int()
    ("GET", "/v1/events:watch", {"headers": {"last-event-id": "\u0661\u0662".encode("utf-8")}}),
    ("GET", "/v1/events", {"params": {"after_id": "9" * 5000}}),
    ("GET", "/v1/events", {"headers": {"solo-timeout": "9" * 5000}}),
])
def test_inputs_that_do_not_parse_are_400_not_500(method, url, kw):
    """(found by the attacker review: a 4,301-digit integer and a latin-1 '²' were 500 with a traceback)"""
    async def scenario():
        async with _asgi(_Servicer()) as http:
            headers = {**GOOD, **kw.pop("headers", {})}
            return await http.request(method, url, headers=headers, **kw)
    answer = asyncio.run(scenario())
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "INVALID_ARGUMENT" and answer.json()["message"]


@pytest.mark.parametrize("token", [None, "Basic abc", "Bearer ", "Bearer forged"])
@pytest.mark.parametrize("url", ["/v1/services", "/v1/services/x/methods/m", "/v1/secrets/db"])
def test_a_body_is_not_read_before_the_token_authenticates(token, url):
    """A caller without a valid token gets 401 and the gateway reads none of its body."""
    read = []

    async def body():
        read.append(1)
        yield b'{"name": "x"}'

    async def scenario():
        async with _asgi(_Servicer()) as http:
            headers = {"Authorization": token} if token else {}
            return await http.request("PUT" if "secrets" in url else "POST", url, content=body(), headers=headers)
    answer = asyncio.run(scenario())
    assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHENTICATED", answer.text
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert read == []


def test_a_valid_token_gets_its_body_read():
    read = []

    async def body():
        read.append(1)
        yield b"[1,"

    async def scenario():
        async with _asgi(_Servicer()) as http:
            return await http.post("/v1/services/x/methods/m", content=body(), headers=GOOD)
    answer = asyncio.run(scenario())
    assert answer.status_code == 400 and read == [1]  # read, then refused as not JSON


def test_a_stream_whose_reader_stalls_is_dropped_and_its_handler_cancelled():
    """An SSE write that waits past the write timeout aborts the connection and cancels the stream's handler
    (a reader that stopped reading holds neither)."""
    from solo.rest.app import EventStream
    from solo.rest.server import TRANSPORT_EXTENSION

    class Endless:
        async def ListServices(self, request, context):
            while True:
                yield pb.ServiceInfo(name="x")

    async def scenario():
        stream = Stream(Endless(), "ListServices", pb.ListServicesRequest(), RestContext((), ""))
        gone = asyncio.Event()
        transport = SimpleNamespace(aborted=False)

        def abort():
            transport.aborted = True
            gone.set()
        transport.abort = abort

        async def events():
            while await stream.next() is not END:
                yield b"data: {}\n\n"

        writes = []

        async def send(message):  # the client reads the head and two events, then nothing
            writes.append(message["type"])
            if len(writes) > 3:
                await asyncio.Event().wait()

        async def receive():
            await gone.wait()
            return {"type": "http.disconnect"}

        response = EventStream(events(), 0.2, stream)
        await asyncio.wait_for(response({"type": "http", "extensions": {TRANSPORT_EXTENSION: transport}},
                                        receive, send), 30)
        await asyncio.sleep(0)
        return transport.aborted, stream.task.done(), len(writes)
    aborted, handler_done, writes = asyncio.run(scenario())
    assert aborted and handler_done and writes == 4


def test_a_stream_its_handler_ended_for_a_slow_reader_is_dropped_at_once():
    """Watch and Logs end a stream whose reader is too slow (their slow-consumer timers): a write still pending
    then gets a moment, not the whole write timeout, before the connection is dropped."""
    import grpc

    from solo.rest.app import ABORT_GRACE, EventStream
    from solo.rest.server import TRANSPORT_EXTENSION

    class Impatient:
        async def Watch(self, request, context):
            await context.write(pb.Event(id=1))
            await asyncio.sleep(0.3)  # the reader took nothing more: the handler's timer fires
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too slow")

    async def scenario():
        stream = Stream(Impatient(), "Watch", pb.WatchRequest(), RestContext((), ""))
        gone = asyncio.Event()
        transport = SimpleNamespace(abort=gone.set)

        async def events():
            while await stream.next() is not END:
                yield b"data: {}\n\n"
            yield b"event: error\n\n"

        async def send(message):
            if message["type"] == "http.response.body":
                await asyncio.Event().wait()  # the client reads the head, then nothing

        async def receive():
            await gone.wait()
            return {"type": "http.disconnect"}

        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(EventStream(events(), 3600, stream)(
            {"type": "http", "extensions": {TRANSPORT_EXTENSION: transport}}, receive, send), 60)
        return gone.is_set(), asyncio.get_running_loop().time() - started
    dropped, seconds = asyncio.run(scenario())
    assert dropped and seconds < 30 * ABORT_GRACE  # not the hour of write timeout
