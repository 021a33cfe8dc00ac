"""A tenant's service loaded from source and ready to call. Pure Python: no Ray, no gRPC.

The host actor owns one instance. Sync methods run in a thread pool of `max_concurrency`
threads; async methods run on the event loop; generator methods stream their items.
"""
from __future__ import annotations

import asyncio
import inspect
import linecache
import sys
import time
import traceback
import types
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from solo.api import HOOKS, Context, Service
from solo.errors import DeadlineExceeded, InvalidRequest, NotFound, ServiceFailed, SoloError

_END = object()


@dataclass
class Method:
    name: str
    func: Callable
    kind: str  # "sync", "async", "gen", "agen"
    signature: inspect.Signature | None

    @property
    def streams(self) -> bool:
        return self.kind in ("gen", "agen")


def tenant_failure(exc: BaseException, filename: str, during: str = "") -> ServiceFailed:
    """The tenant's exception as the caller should see it: type, message, and where in their file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    where = f" ({filename}, line {frames[-1].lineno}, in {frames[-1].name})" if frames else ""
    prefix = f"{during}: " if during else ""
    return ServiceFailed(f"{prefix}{type(exc).__name__}: {exc}{where}", exception_type=type(exc).__name__)


def find_service_class(module: types.ModuleType, class_name: str, filename: str) -> type:
    if class_name:
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise InvalidRequest(f"{filename} defines no class named {class_name!r}")
        return cls
    defined = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
    candidates = [c for c in defined if issubclass(c, Service)] or defined
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InvalidRequest(f"{filename} defines no service class; define a class (ideally a subclass of "
                             "solo.Service) with public methods")
    names = ", ".join(sorted(c.__name__ for c in candidates))
    raise InvalidRequest(f"{filename} defines several candidate service classes ({names}); "
                         "choose one with --class (class_name in the spec)")


def _method_table(obj: Any) -> dict[str, Method]:
    """Public methods only: properties and other attributes are never evaluated here."""
    table = {}
    for name in dir(type(obj)):
        if name.startswith("_") or name in HOOKS or name == "context":
            continue
        static = inspect.getattr_static(obj, name)
        if not isinstance(static, (types.FunctionType, staticmethod, classmethod)):
            continue
        func = getattr(obj, name)
        if inspect.isasyncgenfunction(func):
            kind = "agen"
        elif inspect.isgeneratorfunction(func):
            kind = "gen"
        elif inspect.iscoroutinefunction(func):
            kind = "async"
        else:
            kind = "sync"
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None
        table[name] = Method(name, func, kind, sig)
    return table


class ServiceInstance:
    def __init__(self, obj: Any, methods: dict[str, Method], filename: str, executor: ThreadPoolExecutor):
        self.obj = obj
        self.methods = methods
        self.filename = filename
        self.executor = executor
        self.calls = 0
        self.errors = 0
        self.failed = 0  # errors raised by the service itself (a caller's short deadline does not count)
        self.in_flight = 0
        self.started_at = time.time()

    @classmethod
    async def load(cls, source: str, filename: str, class_name: str, context: Context,
                   max_concurrency: int = 1) -> ServiceInstance:
        module = types.ModuleType(f"solo_service_{context.name.replace('-', '_')}")
        module.__file__ = filename
        sys.modules[module.__name__] = module  # dataclasses, pickle and typing look the module up
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=f"solo-{context.name}")
        loop = asyncio.get_running_loop()
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise InvalidRequest(f"syntax error in {filename}, line {exc.lineno}: {exc.msg}") from None
        try:
            await loop.run_in_executor(executor, exec, code, module.__dict__)
        except BaseException as exc:  # noqa: BLE001 - tenant code may raise anything, SystemExit included
            raise tenant_failure(exc, filename, f"importing {filename} failed") from None
        service_cls = find_service_class(module, class_name, filename)

        def construct():
            obj = service_cls.__new__(service_cls)
            try:
                obj.context = context
            except AttributeError:  # __slots__ or a read-only property: the service goes without
                pass
            obj.__init__()
            return obj

        try:
            obj = await loop.run_in_executor(executor, construct)
        except TypeError as exc:
            if "__init__()" in str(exc):
                raise InvalidRequest(f"{service_cls.__name__}.__init__ must take no arguments besides self "
                                     f"(read settings from self.context.config): {exc}") from None
            raise tenant_failure(exc, filename, f"{service_cls.__name__}() failed") from None
        except BaseException as exc:  # noqa: BLE001
            raise tenant_failure(exc, filename, f"{service_cls.__name__}() failed") from None
        instance = cls(obj, _method_table(obj), filename, executor)
        if not instance.methods:
            raise InvalidRequest(f"{service_cls.__name__} in {filename} has no public methods to call")
        await instance.hook("start")
        return instance

    @property
    def class_name(self) -> str:
        return type(self.obj).__name__

    def has_hook(self, name: str) -> bool:
        """Whether the service defines the hook itself (solo.Service's defaults do not count)."""
        func = getattr(type(self.obj), name, None)
        return func is not None and func is not getattr(Service, name, None)

    async def hook(self, name: str, *args: Any) -> Any:
        func = getattr(self.obj, name, None)
        if func is None:
            return None
        try:
            if inspect.iscoroutinefunction(func):
                return await func(*args)
            return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)
        except BaseException as exc:  # noqa: BLE001
            raise tenant_failure(exc, self.filename, f"{name}() failed") from None

    async def healthy(self) -> tuple[bool, str]:
        try:
            ok = await self.hook("health")
        except SoloError as exc:
            return False, exc.message
        return (ok is None or bool(ok)), ("" if ok is None or ok else "health() returned False")

    def _resolve(self, name: str, args: tuple, kwargs: dict) -> Method:
        method = self.methods.get(name)
        if method is None:
            known = ", ".join(sorted(self.methods)) or "none"
            raise NotFound(f"{self.class_name} has no method {name!r}; callable methods: {known}")
        if method.signature is not None:
            try:
                method.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidRequest(f"wrong arguments for {name}{method.signature}: {exc}") from None
        return method

    async def call(self, name: str, args: tuple, kwargs: dict, timeout: float | None = None) -> Any:
        method = self._resolve(name, args, kwargs)
        if method.streams:
            raise InvalidRequest(f"{name} streams its results; call it as a stream (InvokeStream, "
                                 "`solo call --stream`, client.stream())")
        return await self._run(self._invoke(method, args, kwargs), timeout)

    async def _invoke(self, method: Method, args: tuple, kwargs: dict) -> Any:
        if method.kind == "async":
            return await method.func(*args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: method.func(*args, **kwargs))

    async def _run(self, coro, timeout: float | None) -> Any:
        self.calls += 1
        self.in_flight += 1
        deadline = asyncio.timeout(timeout)  # expired() tells our deadline from the tenant's TimeoutError
        try:
            async with deadline:
                return await coro
        except TimeoutError as exc:
            self.errors += 1
            if deadline.expired():  # the caller's deadline: not counted as the service failing (see failed)
                raise DeadlineExceeded(f"the call did not finish within its deadline ({timeout:.3g}s)") from None
            self.failed += 1
            raise tenant_failure(exc, self.filename) from None
        except SoloError:
            self.errors += 1
            self.failed += 1
            raise
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            self.errors += 1
            self.failed += 1
            raise tenant_failure(exc, self.filename) from None
        finally:
            self.in_flight -= 1

    async def stream(self, name: str, args: tuple, kwargs: dict) -> AsyncIterator[Any]:
        method = self._resolve(name, args, kwargs)
        if not method.streams:
            yield await self.call(name, args, kwargs)
            return
        self.calls += 1
        self.in_flight += 1
        try:
            if method.kind == "agen":
                async for item in method.func(*args, **kwargs):
                    yield item
            else:
                loop = asyncio.get_running_loop()
                gen = await loop.run_in_executor(self.executor, lambda: method.func(*args, **kwargs))
                try:
                    while (item := await loop.run_in_executor(self.executor, next, gen, _END)) is not _END:
                        yield item
                finally:
                    await loop.run_in_executor(self.executor, gen.close)
        except (SoloError, asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001
            self.errors += 1
            self.failed += 1
            raise tenant_failure(exc, self.filename) from None
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        try:
            await self.hook("stop")
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
