"""solo.runtime.instance: tenant source loaded and called on a plain asyncio loop (no Ray, no gRPC)."""
from __future__ import annotations

import asyncio
import textwrap

import pytest

from solo.api import Context
from solo.errors import DeadlineExceeded, InvalidRequest, NotFound, ServiceFailed
from solo.runtime.instance import ServiceInstance

CTX = Context(tenant="acme", name="svc", version="3", config={"greeting": "hi"}, labels={"team": "core"})


def run(coro):
    return asyncio.run(coro)


def line(source: str, text: str) -> int:
    """1-based line of the first line of (dedented) `source` containing `text`."""
    return next(i for i, ln in enumerate(textwrap.dedent(source).splitlines(), 1) if text in ln)


async def load(source: str, class_name: str = "", max_concurrency: int = 1, filename: str = "svc.py",
               context: Context = CTX) -> ServiceInstance:
    return await ServiceInstance.load(textwrap.dedent(source), filename, class_name, context, max_concurrency)


def load_error(source: str, class_name: str = "") -> Exception:
    async def scenario():
        await load(source, class_name)
    with pytest.raises(Exception) as err:
        run(scenario())
    return err.value


async def call(instance: ServiceInstance, method: str, *args, timeout: float | None = None, **kwargs):
    return await instance.call(method, args, kwargs, timeout)


async def collect(instance: ServiceInstance, method: str, *args, **kwargs) -> list:
    return [item async for item in instance.stream(method, args, kwargs)]


PLAIN = """
class Counter:
    def __init__(self):
        self.value = 0

    def incr(self, by=1):
        self.value += by
        return self.value

    def _private(self):
        return "hidden"
"""

SUBCLASS = """
import solo

class Greeter(solo.Service):
    def greet(self, who):
        return f"{self.context.config['greeting']}, {who}"
"""


# -- loading --------------------------------------------------------------------------------------

def test_plain_class_loads_and_keeps_state_between_calls():
    async def scenario():
        inst = await load(PLAIN)
        try:
            assert inst.class_name == "Counter" and sorted(inst.methods) == ["incr"]
            assert [await call(inst, "incr"), await call(inst, "incr", by=5)] == [1, 6]
        finally:
            await inst.close()
    run(scenario())


def test_service_subclass_loads_and_hooks_are_not_methods():
    async def scenario():
        inst = await load(SUBCLASS)
        try:
            assert inst.class_name == "Greeter" and sorted(inst.methods) == ["greet"]
            assert await call(inst, "greet", "ann") == "hi, ann"
        finally:
            await inst.close()
    run(scenario())


def test_service_subclass_wins_over_helper_classes():
    source = """
    import solo

    class Helper:
        def help(self):
            return 1

    class Main(solo.Service):
        def run(self):
            return Helper().help()
    """
    async def scenario():
        inst = await load(source)
        assert inst.class_name == "Main" and await call(inst, "run") == 1
        await inst.close()
    run(scenario())


def test_imported_classes_are_not_candidates():
    source = """
    from collections import OrderedDict
    from solo import Service

    class Only:
        def get(self):
            return OrderedDict(a=1)
    """
    async def scenario():
        inst = await load(source)
        assert inst.class_name == "Only"
        await inst.close()
    run(scenario())


SEVERAL = """
class Alpha:
    def a(self):
        return "a"

class Beta:
    def b(self):
        return "b"
"""


def test_several_candidates_are_named_in_the_error():
    err = load_error(SEVERAL)
    assert isinstance(err, InvalidRequest)
    assert "several candidate service classes (Alpha, Beta)" in err.message and "--class" in err.message


def test_class_name_picks_one_candidate():
    async def scenario():
        inst = await load(SEVERAL, class_name="Beta")
        assert inst.class_name == "Beta" and await call(inst, "b") == "b"
        await inst.close()
    run(scenario())


def test_unknown_class_name_is_invalid():
    err = load_error(SEVERAL, class_name="Gamma")
    assert isinstance(err, InvalidRequest) and err.message == "svc.py defines no class named 'Gamma'"


@pytest.mark.parametrize("source", ["x = 1\n", "def f():\n    return 1\n", "from collections import OrderedDict\n"])
def test_source_without_a_class_is_invalid(source):
    err = load_error(source)
    assert isinstance(err, InvalidRequest) and "svc.py defines no service class" in err.message


def test_class_without_public_methods_is_invalid():
    err = load_error("import solo\nclass Idle(solo.Service):\n    def _hidden(self):\n        pass\n")
    assert isinstance(err, InvalidRequest) and "Idle in svc.py has no public methods" in err.message


def test_syntax_error_is_invalid_and_names_the_line():
    err = load_error("class A:\n    def f(self:\n        pass\n")
    assert isinstance(err, InvalidRequest) and "syntax error in svc.py, line 2" in err.message


def test_import_time_exception_is_a_service_failure_naming_file_and_line():
    source = """
    import os

    LIMIT = int(os.environ.get("SOLO_TEST_UNSET_LIMIT", "not a number"))

    class Svc:
        def f(self):
            return LIMIT
    """
    err = load_error(source)
    assert isinstance(err, ServiceFailed) and err.exception_type == "ValueError"
    assert err.message.startswith("importing svc.py failed: ValueError: invalid literal for int()")
    assert err.message.endswith(f"(svc.py, line {line(source, 'LIMIT = int')}, in <module>)")


def test_system_exit_at_import_is_a_service_failure():
    err = load_error("import sys\nsys.exit(3)\n")
    assert isinstance(err, ServiceFailed) and "importing svc.py failed: SystemExit: 3 (svc.py, line 2" in err.message


def test_constructor_exception_is_a_service_failure():
    source = """
    class Svc:
        def __init__(self):
            self.settings = {}
            self.port = self.settings["port"]

        def f(self):
            return 1
    """
    err = load_error(source)
    assert isinstance(err, ServiceFailed) and err.exception_type == "KeyError"
    assert err.message == f"Svc() failed: KeyError: 'port' (svc.py, line {line(source, 'self.port')}, in __init__)"


def test_constructor_type_error_of_its_own_is_a_service_failure():
    source = "class Svc:\n    def __init__(self):\n        self.x = 1 + 'a'\n    def f(self):\n        pass\n"
    err = load_error(source)
    assert isinstance(err, ServiceFailed) and "Svc() failed: TypeError" in err.message


def test_constructor_with_required_arguments_is_invalid():
    err = load_error("class Svc:\n    def __init__(self, port):\n        self.port = port\n    def f(self):\n"
                     "        pass\n")
    assert isinstance(err, InvalidRequest)
    assert "Svc.__init__ must take no arguments besides self" in err.message and "self.context.config" in err.message


def test_start_hook_failure_fails_the_load():
    source = "import solo\nclass Svc(solo.Service):\n    def start(self):\n        raise RuntimeError('no db')\n" \
             "    def f(self):\n        pass\n"
    err = load_error(source)
    assert isinstance(err, ServiceFailed)
    assert err.message == "start() failed: RuntimeError: no db (svc.py, line 4, in start)"


# -- context --------------------------------------------------------------------------------------

CONTEXT_SOURCE = """
class Svc{base}:
    def __init__(self):
        self.seen_in_init = self.context.tenant

    def facts(self):
        c = self.context
        return {{"tenant": c.tenant, "name": c.name, "version": c.version, "config": c.config,
                "labels": c.labels, "in_init": self.seen_in_init}}
"""


@pytest.mark.parametrize("base,prefix", [("", ""), ("(solo.Service)", "import solo\n")])
def test_context_is_populated_before_the_constructor_runs(base, prefix):
    async def scenario():
        inst = await load(prefix + CONTEXT_SOURCE.format(base=base))
        assert await call(inst, "facts") == {"tenant": "acme", "name": "svc", "version": "3",
                                             "config": {"greeting": "hi"}, "labels": {"team": "core"},
                                             "in_init": "acme"}
        await inst.close()
    run(scenario())


# -- method kinds ---------------------------------------------------------------------------------

KINDS = """
import asyncio

class Svc:
    def add(self, a, b):
        return a + b

    async def slow_add(self, a, b):
        await asyncio.sleep(0)
        return a + b

    def count(self, n):
        for i in range(n):
            yield i

    async def acount(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    def explode_after(self, n):
        yield from range(n)
        raise ValueError("ran dry")

    @staticmethod
    def version():
        return "static"
"""


def test_method_kinds_are_detected():
    async def scenario():
        inst = await load(KINDS)
        assert {n: m.kind for n, m in inst.methods.items()} == {
            "add": "sync", "slow_add": "async", "count": "gen", "acount": "agen", "explode_after": "gen",
            "version": "sync"}
        await inst.close()
    run(scenario())


def test_sync_async_and_static_methods_return_their_results():
    async def scenario():
        inst = await load(KINDS)
        assert await call(inst, "add", 1, 2) == 3
        assert await call(inst, "slow_add", a=2, b=3) == 5
        assert await call(inst, "version") == "static"
        await inst.close()
    run(scenario())


def test_generators_stream_their_items():
    async def scenario():
        inst = await load(KINDS)
        assert await collect(inst, "count", 3) == [0, 1, 2]
        assert await collect(inst, "acount", n=4) == [0, 1, 2, 3]
        assert await collect(inst, "add", 1, 1) == [2]  # a plain method streams its single result
        await inst.close()
    run(scenario())


@pytest.mark.parametrize("method", ["count", "acount"])
def test_calling_a_streaming_method_without_streaming_is_invalid(method):
    async def scenario():
        inst = await load(KINDS)
        with pytest.raises(InvalidRequest, match=f"{method} streams its results; call it as a stream"):
            await call(inst, method, 2)
        await inst.close()
    run(scenario())


def test_generator_failure_mid_stream_is_a_service_failure_after_the_items_so_far():
    async def scenario():
        inst = await load(KINDS)
        items = []
        with pytest.raises(ServiceFailed) as err:
            async for item in inst.stream("explode_after", (2,), {}):
                items.append(item)
        assert items == [0, 1]
        assert err.value.message == f"ValueError: ran dry (svc.py, line {line(KINDS, 'ran dry')}, in explode_after)"
        assert (inst.calls, inst.errors, inst.in_flight) == (1, 1, 0)
        await inst.close()
    run(scenario())


def test_unknown_method_is_not_found_listing_the_methods():
    async def scenario():
        inst = await load(KINDS)
        for name in ("nope", "_private", "start", "__init__", "context"):
            with pytest.raises(NotFound) as err:
                await call(inst, name)
            assert err.value.message == (f"Svc has no method {name!r}; callable methods: "
                                         "acount, add, count, explode_after, slow_add, version")
        with pytest.raises(NotFound):
            await collect(inst, "nope")
        await inst.close()
    run(scenario())


@pytest.mark.parametrize("args,kwargs,problem", [
    ((1,), {}, "missing a required argument: 'b'"),
    ((1, 2, 3), {}, "too many positional arguments"),
    ((), {"a": 1, "b": 2, "c": 3}, "got an unexpected keyword argument 'c'"),
])
def test_wrong_arguments_are_invalid_and_show_the_signature(args, kwargs, problem):
    async def scenario():
        inst = await load(KINDS)
        with pytest.raises(InvalidRequest) as err:
            await inst.call("add", args, kwargs)
        assert err.value.message == f"wrong arguments for add(a, b): {problem}"
        assert inst.calls == 0  # rejected before it reached tenant code
        await inst.close()
    run(scenario())


FAILING = """
import asyncio
import json

def check(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x

class Svc:
    def direct(self, x):
        raise ValueError(f"bad input {x}")

    def nested(self, x):
        return check(x)

    def parse(self, text):
        return json.loads(text)

    async def async_direct(self):
        await asyncio.sleep(0)
        raise KeyError("gone")
"""


@pytest.mark.parametrize("method,expected", [
    ("direct", "ValueError: bad input -1 (svc.py, line {direct}, in direct)"),
    ("nested", "ValueError: negative: -1 (svc.py, line {nested}, in check)"),
])
def test_tenant_exception_is_a_service_failure_with_type_message_and_place(method, expected):
    async def scenario():
        inst = await load(FAILING)
        with pytest.raises(ServiceFailed) as err:
            await call(inst, method, -1)
        assert err.value.message == expected.format(direct=line(FAILING, "bad input"),
                                                    nested=line(FAILING, "negative:"))
        assert err.value.exception_type == "ValueError"
        await inst.close()
    run(scenario())


def test_exception_from_library_code_points_at_the_tenants_line():
    async def scenario():
        inst = await load(FAILING)
        with pytest.raises(ServiceFailed) as err:
            await call(inst, "parse", "{oops")
        assert err.value.message.startswith("JSONDecodeError: Expecting property name")
        assert err.value.message.endswith(f"(svc.py, line {line(FAILING, 'json.loads(text)')}, in parse)")
        await inst.close()
    run(scenario())


def test_async_tenant_exception_is_a_service_failure():
    async def scenario():
        inst = await load(FAILING)
        with pytest.raises(ServiceFailed) as err:
            await call(inst, "async_direct")
        assert err.value.message == f"KeyError: 'gone' (svc.py, line {line(FAILING, 'gone')}, in async_direct)"
        await inst.close()
    run(scenario())


# -- deadlines ------------------------------------------------------------------------------------

SLOW = """
import asyncio, time

class Svc:
    async def slow(self):
        await asyncio.sleep(10)

    def slow_sync(self):
        time.sleep(0.3)

    async def quick(self):
        return "done"

    def raises_timeout(self):
        raise TimeoutError("the database did not answer")
"""


def test_async_method_over_its_deadline_is_deadline_exceeded():
    async def scenario():
        inst = await load(SLOW)
        with pytest.raises(DeadlineExceeded, match=r"did not finish within its deadline \(0\.05s\)"):
            await call(inst, "slow", timeout=0.05)
        assert (inst.calls, inst.errors, inst.in_flight) == (1, 1, 0)
        assert await call(inst, "quick", timeout=1.0) == "done"
        await inst.close()
    run(scenario())


def test_sync_method_over_its_deadline_is_deadline_exceeded():
    async def scenario():
        inst = await load(SLOW)
        with pytest.raises(DeadlineExceeded):
            await call(inst, "slow_sync", timeout=0.05)
        await inst.close()
    run(scenario())


# Guards: since 3.11 asyncio.TimeoutError is the builtin TimeoutError, so the tenant's own one must not be taken
# for the call's deadline (with no deadline that used to crash formatting None).
def test_tenant_timeout_error_without_a_deadline_is_a_service_failure():
    async def scenario():
        inst = await load(SLOW)
        try:
            with pytest.raises(ServiceFailed, match="TimeoutError: the database did not answer"):
                await call(inst, "raises_timeout")
        finally:
            await inst.close()
    run(scenario())


# Guards: the tenant's TimeoutError within the deadline is the tenant's failure, not DeadlineExceeded.
def test_tenant_timeout_error_within_the_deadline_is_a_service_failure():
    async def scenario():
        inst = await load(SLOW)
        try:
            with pytest.raises(ServiceFailed, match="TimeoutError: the database did not answer"):
                await call(inst, "raises_timeout", timeout=5.0)
        finally:
            await inst.close()
    run(scenario())


# -- hooks ----------------------------------------------------------------------------------------

HOOKS = """
import solo

class Svc(solo.Service):
    def __init__(self):
        self.log = ["init"]
        self.ok = True

    def start(self):
        self.log.append("start")

    def stop(self):
        self.log.append("stop")

    def health(self):
        self.log.append("health")
        if self.ok == "raise":
            raise RuntimeError("db down")
        return self.ok

    def events(self):
        return list(self.log)
"""


def test_hooks_start_and_stop_run_around_the_calls():
    async def scenario():
        inst = await load(HOOKS)
        assert await call(inst, "events") == ["init", "start"]
        await inst.close()
        assert inst.obj.log == ["init", "start", "stop"]
    run(scenario())


def test_async_hooks_are_awaited():
    source = HOOKS.replace("def start", "async def start").replace("def stop", "async def stop")
    async def scenario():
        inst = await load(source)
        assert await call(inst, "events") == ["init", "start"]
        await inst.close()
        assert inst.obj.log[-1] == "stop"
    run(scenario())


def test_health_is_reported():
    async def scenario():
        inst = await load(HOOKS)
        assert await inst.healthy() == (True, "")
        inst.obj.ok = False
        assert await inst.healthy() == (False, "health() returned False")
        inst.obj.ok = "raise"
        assert await inst.healthy() == (False, f"health() failed: RuntimeError: db down "
                                               f"(svc.py, line {line(HOOKS, 'db down')}, in health)")
        assert inst.obj.log.count("health") == 3
        await inst.close()
    run(scenario())


def test_plain_class_without_hooks_is_healthy_and_closes():
    async def scenario():
        inst = await load(PLAIN)
        assert await inst.healthy() == (True, "")
        await inst.close()
    run(scenario())


# -- concurrency and counters ---------------------------------------------------------------------

CONCURRENCY = """
import asyncio, threading, time

class Svc:
    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def _enter(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def _leave(self):
        with self.lock:
            self.now -= 1

    def work(self):
        self._enter()
        time.sleep(0.05)
        self._leave()

    async def awork(self):
        self._enter()
        await asyncio.sleep(0.05)
        self._leave()
"""


@pytest.mark.parametrize("method,max_concurrency,expect_overlap", [
    ("work", 1, False), ("work", 4, True), ("awork", 1, True)])
def test_max_concurrency_serialises_sync_calls_while_async_calls_overlap(method, max_concurrency, expect_overlap):
    async def scenario():
        inst = await load(CONCURRENCY, max_concurrency=max_concurrency)
        await asyncio.gather(*(call(inst, method) for _ in range(4)))
        peak = inst.obj.peak
        await inst.close()
        return peak
    peak = run(scenario())
    assert (peak > 1) is expect_overlap, f"peak concurrency {peak}"


GATED = """
class Svc:
    async def wait(self):
        await self.gate.wait()
        return "released"

    def fail(self):
        raise RuntimeError("no")

    def ok(self):
        return 1
"""


def test_calls_errors_and_in_flight_are_counted():
    async def scenario():
        inst = await load(GATED)
        inst.obj.gate = asyncio.Event()
        assert (inst.calls, inst.errors, inst.in_flight) == (0, 0, 0)
        waiting = asyncio.create_task(call(inst, "wait"))
        await asyncio.sleep(0.01)
        assert (inst.calls, inst.in_flight) == (1, 1)
        inst.obj.gate.set()
        assert await waiting == "released"
        assert inst.in_flight == 0
        await call(inst, "ok")
        with pytest.raises(ServiceFailed):
            await call(inst, "fail")
        with pytest.raises(NotFound):
            await call(inst, "missing")
        assert (inst.calls, inst.errors, inst.in_flight) == (3, 1, 0)
        await inst.close()
    run(scenario())


# -- tenant code that should load -----------------------------------------------------------------

# Guards: the tenant module must be in sys.modules (dataclasses, pickle and typing look it up).
def test_dataclass_with_postponed_annotations_loads():
    source = """
    from __future__ import annotations
    from dataclasses import dataclass

    @dataclass
    class Item:
        name: str
        qty: int = 0

    class Shop:
        def item(self, name):
            return Item(name).name
    """
    async def scenario():
        inst = await load(source, class_name="Shop")
        assert await call(inst, "item", "tea") == "tea"
        await inst.close()
    run(scenario())


# Guards: building the method table must not evaluate properties (tenant code that may raise).
def test_property_that_raises_does_not_break_loading():
    source = """
    class Svc:
        def __init__(self):
            self.conn = None

        @property
        def connection(self):
            if self.conn is None:
                raise RuntimeError("not connected yet")
            return self.conn

        def ping(self):
            return "pong"
    """
    async def scenario():
        inst = await load(source)
        assert sorted(inst.methods) == ["ping"]
        await inst.close()
    run(scenario())


def test_only_functions_are_methods():
    source = """
    import functools

    class Tool:
        def __call__(self):
            return "tool"

    class Svc:
        limit = 10
        tool = Tool()
        helper = functools.partial(len)
        Nested = Tool

        def plain(self):
            return "plain"

        @classmethod
        def build(cls):
            return cls.__name__

        @staticmethod
        def util():
            return "util"
    """
    async def scenario():
        inst = await load(source, class_name="Svc")
        assert sorted(inst.methods) == ["build", "plain", "util"]
        assert [await call(inst, m) for m in ("build", "plain", "util")] == ["Svc", "plain", "util"]
        await inst.close()
    run(scenario())
