"""Every bad input of the core issue gets a clear status and message, and breaks nothing."""
from __future__ import annotations

import time

import grpc
import pytest

from solo import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    ServiceFailed,
    Unavailable,
)
from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from tests.conftest import EXAMPLES, source


@pytest.fixture(scope="module")
def stub(solo):
    channel = grpc.insecure_channel(solo.address)
    yield solo_pb2_grpc.GatewayStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def auth(alice):
    return alice.metadata


def test_syntax_error_names_file_and_line(alice, name):
    with pytest.raises(InvalidRequest, match=r"syntax error in broken\.py, line 3"):
        alice.deploy("class A:\n    def f(self):\n        return (\n", name, filename="broken.py")


def test_no_service_class(alice, name):
    with pytest.raises(InvalidRequest, match="defines no service class"):
        alice.deploy("def f():\n    return 1\n", name)


def test_several_candidate_classes_then_choose_one(alice, name):
    text = "class A:\n    def a(self):\n        return 'a'\nclass B:\n    def b(self):\n        return 'b'\n"
    with pytest.raises(InvalidRequest, match=r"several candidate service classes \(A, B\).*--class"):
        alice.deploy(text, name)
    alice.deploy(text, name, class_name="B")
    assert alice.call(name, "b") == "b"
    alice.stop(name, remove=True)


def test_unknown_method_and_wrong_arguments(alice, name):
    alice.deploy(EXAMPLES / "counter.py", name)
    with pytest.raises(NotFound, match="no method 'decr'; callable methods: get, incr, reset"):
        alice.call(name, "decr")
    with pytest.raises(InvalidRequest, match=r"wrong arguments for incr\(by: int = 1\)"):
        alice.call(name, "incr", step=3)
    with pytest.raises(InvalidRequest, match="invalid method name"):
        alice.call(name, "_private")
    assert alice.call(name, "incr") == 1  # the service is unharmed
    alice.stop(name, remove=True)


def test_payload_that_is_not_json(stub, auth, alice, name):
    alice.deploy(EXAMPLES / "counter.py", name)
    with pytest.raises(grpc.RpcError) as err:
        stub.Invoke(pb.InvokeRequest(service=name, method="incr", json="{by: 2"), metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid JSON" in err.value.details()
    alice.stop(name, remove=True)


def test_source_over_the_size_limit(alice, name):
    big = "class A:\n    def f(self):\n        return 1\n" + "#" * (70 * 1024)
    with pytest.raises(InvalidRequest, match=r"over the limit of 65536 bytes"):
        alice.deploy(big, name)


def test_empty_name_over_raw_grpc(stub, auth):
    with pytest.raises(grpc.RpcError) as err:
        stub.DeployService(pb.DeployServiceRequest(spec=pb.ServiceSpec(source="class A: pass")), metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid service name ''" in err.value.details()


@pytest.mark.parametrize("bad", ["Counter", "9lives", "a" * 64, "with space", "../etc", "x_y"])
def test_invalid_names(alice, bad):
    with pytest.raises(InvalidRequest, match="invalid service name"):
        alice.deploy(EXAMPLES / "echo.py", bad)
    with pytest.raises(InvalidRequest, match="invalid service name"):
        alice.call(bad, "echo", "x")


@pytest.mark.parametrize("spec, match", [
    ({"num_cpus": -1}, "num_cpus must be a finite number >= 0"),
    ({"num_cpus": 1e9}, "more than one service may ask for"),
    ({"num_gpus": float("nan")}, "num_gpus must be a finite number"),
    ({"memory": 1 << 60}, "memory_bytes="),
    ({"resources": {"CPU": 1}}, "invalid custom resource name"),
    ({"resources": {"slot": -2}}, "custom resource slot must be"),
    ({"max_concurrency": 100000}, "max_concurrency must be between"),
])
def test_negative_or_absurd_resources(alice, name, spec, match):
    with pytest.raises(InvalidRequest, match=match):
        alice.deploy(EXAMPLES / "echo.py", name, **spec)


def test_request_ray_can_never_schedule_fails_at_once(alice, name):
    started = time.monotonic()
    with pytest.raises(FailedPrecondition) as err:
        alice.deploy(EXAMPLES / "echo.py", name, num_cpus=64)
    assert time.monotonic() - started < 10
    assert "asked for num_cpus=64" in err.value.message and "the largest node has CPU=2" in err.value.message
    with pytest.raises(FailedPrecondition, match="the largest node has tpu=0"):
        alice.deploy(EXAMPLES / "echo.py", name, resources={"tpu": 1})


def test_request_that_cannot_be_placed_now_fails_after_a_bounded_wait(alice, bob, name):
    # The test cluster has one "slot": the first service takes it, the second cannot be placed.
    alice.deploy(EXAMPLES / "echo.py", name, resources={"slot": 1})
    started = time.monotonic()
    with pytest.raises(FailedPrecondition) as err:
        bob.deploy(EXAMPLES / "echo.py", name, resources={"slot": 1})
    assert time.monotonic() - started < 30  # schedule_timeout_seconds is 4 in the test config
    assert "could not place the service within 4s" in err.value.message
    assert "asked for num_cpus=0, slot=1" in err.value.message and "available now" in err.value.message
    assert bob.get(name)["state"] == "FAILED"
    alice.stop(name, remove=True)
    bob.deploy(EXAMPLES / "echo.py", name, resources={"slot": 1})  # now it fits
    assert bob.call(name, "echo", "placed") == "placed"
    bob.stop(name, remove=True)


def test_exception_in_constructor(alice, name):
    text = source("""
        class Bad:
            def __init__(self):
                raise ValueError("missing setting")
            def f(self):
                return 1
    """)
    with pytest.raises(ServiceFailed, match=r"Bad\(\) failed: ValueError: missing setting \(bad\.py, line 3"):
        alice.deploy(text, name, filename="bad.py")
    status = alice.get(name)
    assert status["state"] == "FAILED" and "missing setting" in status["message"]
    with pytest.raises(Unavailable, match="has failed"):
        alice.call(name, "f")
    alice.deploy(EXAMPLES / "echo.py", name)  # fixing the code needs no --replace
    assert alice.call(name, "echo", 1) == 1
    alice.stop(name, remove=True)


def test_os_exit_in_constructor(alice, name):
    text = "import os\nclass Quitter:\n    def __init__(self):\n        os._exit(3)\n    def f(self):\n        return 1\n"
    with pytest.raises(ServiceFailed, match="service process exited"):
        alice.deploy(text, name)
    assert alice.get(name)["state"] == "FAILED"


def test_exception_at_import(alice, name):
    with pytest.raises(ServiceFailed, match=r"importing svc\.py failed: ModuleNotFoundError"):
        alice.deploy("import not_a_module_anywhere\nclass A:\n    def f(self):\n        return 1\n", name,
                     filename="svc.py")


def test_exception_in_method_has_type_and_message_only(stub, auth, alice, name):
    alice.deploy("class A:\n    def f(self):\n        raise KeyError('k')\n", name, filename="a.py")
    with pytest.raises(grpc.RpcError) as err:
        stub.Invoke(pb.InvokeRequest(service=name, method="f"), metadata=auth)
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert err.value.details() == "KeyError: 'k' (a.py, line 3, in f)"
    assert ("solo-exception-type", "KeyError") in tuple(err.value.trailing_metadata())
    assert "ray" not in err.value.details().lower() and "solo/" not in err.value.details()
    alice.stop(name, remove=True)


def test_deadline_expires(alice, name):
    alice.deploy(source("""
        import asyncio, time
        class Slow:
            async def nap(self, seconds):
                await asyncio.sleep(seconds)
                return "late"
            def block(self, seconds):
                time.sleep(seconds)
                return "late"
    """), name)
    for method in ("nap", "block"):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            alice.call(name, method, 5, _timeout=0.5)
        assert time.monotonic() - started < 3
    assert alice.call(name, "nap", 0) == "late"
    alice.stop(name, remove=True)


def test_unknown_and_other_tenants_services_are_not_found(alice, name):
    for call in (lambda: alice.get(name), lambda: alice.stop(name), lambda: alice.call(name, "f")):
        with pytest.raises(NotFound, match=f"service '{name}' not found"):
            call()


def test_different_spec_is_already_exists(alice, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    with pytest.raises(AlreadyExists):
        alice.deploy(EXAMPLES / "echo.py", name, labels={"changed": "yes"})
    alice.stop(name, remove=True)


def test_gateway_and_registry_survive_all_of_it(solo, alice, name):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(solo.address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    alice.deploy(EXAMPLES / "echo.py", name)
    assert alice.call(name, "echo", "still fine") == "still fine"
    alice.stop(name, remove=True)


@pytest.mark.parametrize("field, value", [("since_us", 2**62), ("since_us", -2**62), ("until_us", 2**62),
                                          ("until_us", -(2**63))])
def test_event_times_outside_the_calendar(stub, auth, field, value):
    flt = pb.EventFilter(**{field: value})
    with pytest.raises(grpc.RpcError) as err:
        stub.QueryEvents(pb.QueryEventsRequest(filter=flt), metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field} {value} is outside the calendar" in err.value.details()
    assert "between -62135596800000000 (year 1) and 253402300799999999 (year 9999)" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        next(stub.Watch(pb.WatchRequest(filter=flt), metadata=auth, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "outside the calendar" in err.value.details()


def test_event_times_at_the_ends_of_the_calendar_are_fine(stub, auth):
    flt = pb.EventFilter(since_us=-62135596800000000, until_us=253402300799999999)
    bounded = stub.QueryEvents(pb.QueryEventsRequest(filter=flt), metadata=auth)
    everything = stub.QueryEvents(pb.QueryEventsRequest(), metadata=auth)
    assert len(bounded.events) >= 1 and [e.id for e in bounded.events] == [e.id for e in everything.events]


def test_after_id_beyond_every_id_finds_nothing(stub, auth):
    page = stub.QueryEvents(pb.QueryEventsRequest(filter=pb.EventFilter(after_id=2**64 - 1)), metadata=auth)
    assert list(page.events) == [] and not page.more and page.next_after_id == 2**64 - 1
    with pytest.raises(grpc.RpcError) as err:  # nothing comes, and nothing breaks, until the deadline
        next(stub.Watch(pb.WatchRequest(filter=pb.EventFilter(after_id=2**64 - 1)), metadata=auth, timeout=2))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("method, message", [("Invoke", "InvokeRequest"), ("DeployService", "DeployServiceRequest"),
                                             ("WhoAmI", "WhoAmIRequest")])
def test_corrupt_request_bytes_unary(solo, auth, method, message):
    with grpc.insecure_channel(solo.address) as channel:
        call = channel.unary_unary(f"/solo.v1.Gateway/{method}")  # no serializers: raw bytes both ways
        # a bad varint, a truncated field 1, and (where field 1 is a string or a message) bad UTF-8 in it
        for body in (b"\xff\xff\xff", b"\x0a\x05ab") + ((b"\x0a\x02\xff\xfe",) if method != "WhoAmI" else ()):
            with pytest.raises(grpc.RpcError) as err:
                call(body, metadata=auth, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (body, err.value.details())
            assert err.value.details().startswith(f"the request is not a valid {message}: ")


@pytest.mark.parametrize("method, message", [("Watch", "WatchRequest"), ("ListServices", "ListServicesRequest"),
                                             ("InvokeStream", "InvokeRequest")])
def test_corrupt_request_bytes_streaming(solo, auth, method, message):
    with grpc.insecure_channel(solo.address) as channel:
        with pytest.raises(grpc.RpcError) as err:
            list(channel.unary_stream(f"/solo.v1.Gateway/{method}")(b"\xff\xff\xff", metadata=auth, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"the request is not a valid {message}: ")


@pytest.mark.parametrize("config", ["[" * 100_000, '{"a": ' * 40_000, '{"a": ' * 65 + "1" + "}" * 65],
                         ids=["arrays-past-the-recursion-limit", "objects-past-the-recursion-limit", "65-levels"])
def test_config_nested_too_deeply(stub, auth, name, config):
    spec = pb.ServiceSpec(name=name, source=(EXAMPLES / "echo.py").read_text(), config_json=config)
    with pytest.raises(grpc.RpcError) as err:
        stub.DeployService(pb.DeployServiceRequest(spec=spec), metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config is nested deeper than 64 levels" in err.value.details()


def test_call_arguments_nested_too_deeply(stub, auth, alice, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    for method in ("Invoke", "InvokeStream"):
        with pytest.raises(grpc.RpcError) as err:
            response = getattr(stub, method)(pb.InvokeRequest(service=name, method="echo", json="[" * 100_000),
                                             metadata=auth, timeout=30)
            list(response) if method == "InvokeStream" else response
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.value.details())
    assert alice.call(name, "echo", "fine") == "fine"
    alice.stop(name, remove=True)


ODD_NAMES = source("""
    class Odd:
        def accented(self):
            raise type("Café", (Exception,), {})("accents in the class name")

        def newline(self):
            raise type("Bad\\nName\\t", (Exception,), {})("control characters in the class name")
""")


def test_an_exception_class_with_any_name_reaches_the_client_as_the_services_failure(alice, name):
    """Its class name travels in a trailer, where grpc takes printable ASCII only: the call must still be
    SERVICE_FAILED with its message, not INTERNAL with every trailer lost."""
    alice.deploy(ODD_NAMES, name)
    with pytest.raises(ServiceFailed, match="accents in the class name") as err:
        alice.call(name, "accented")
    assert err.value.exception_type == "Caf\\xe9"
    with pytest.raises(ServiceFailed, match="control characters") as err:
        alice.call(name, "newline")
    assert err.value.exception_type.isprintable()
    alice.stop(name, remove=True)
