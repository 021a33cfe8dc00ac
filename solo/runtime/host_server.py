"""The host side of the call channel: a small grpc.aio server inside the service's process.

Ray owns placement and lifecycle of the host; calls travel over one persistent bidirectional
stream per gateway, many calls per message in both directions (coalesced without waiting:
whatever is queued when the writer is free goes in the next message).
"""
from __future__ import annotations

import asyncio
import hmac
from typing import Any

import grpc

from solo._proto import host_pb2, host_pb2_grpc
from solo.core.dispatch import CHANNEL_OPTIONS, KEY_HEADER
from solo.core.payload import decode_args, encode_result
from solo.errors import SoloError, Unavailable



def error_result(call_id: int, exc: SoloError) -> host_pb2.Result:
    return host_pb2.Result(id=call_id, end=True, error=host_pb2.Error(
        code=exc.code, message=exc.message, exception_type=exc.exception_type))


def value_result(call_id: int, value: Any, end: bool) -> host_pb2.Result:
    json_text, raw = encode_result(value)
    if raw is not None:
        return host_pb2.Result(id=call_id, raw=raw, end=end)
    return host_pb2.Result(id=call_id, json=json_text, end=end)


class HostServicer(host_pb2_grpc.HostServicer):
    def __init__(self, key: str):
        self.key = key
        self.instance = None  # set by the host once the service is loaded

    def _authorized(self, context: grpc.aio.ServicerContext) -> bool:
        for item in context.invocation_metadata() or ():
            if item.key == KEY_HEADER:
                return hmac.compare_digest(item.value, self.key)
        return False

    async def Calls(self, request_iterator, context):
        if not self._authorized(context):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "wrong or missing host key")
        out: asyncio.Queue = asyncio.Queue()
        tasks: dict[int, asyncio.Task] = {}

        async def run(call: host_pb2.Call) -> None:
            try:
                if self.instance is None:
                    raise Unavailable("the service is not loaded on this host yet")
                args, kwargs = decode_args(call.json if call.HasField("json") else None,
                                           call.raw if call.HasField("raw") else None)
                if call.stream:
                    async for item in self.instance.stream(call.method, args, kwargs):
                        out.put_nowait(value_result(call.id, item, end=False))
                    out.put_nowait(host_pb2.Result(id=call.id, end=True))
                else:
                    value = await self.instance.call(call.method, args, kwargs, call.timeout or None)
                    out.put_nowait(value_result(call.id, value, end=True))
            except SoloError as exc:
                out.put_nowait(error_result(call.id, exc))
            except asyncio.CancelledError:
                pass
            finally:
                tasks.pop(call.id, None)

        async def read() -> None:
            async for batch in request_iterator:
                for call in batch.calls:
                    if call.cancel:
                        task = tasks.get(call.id)
                        if task is not None:
                            task.cancel()
                    else:
                        tasks[call.id] = asyncio.create_task(run(call))
            out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            open_ = True
            while open_:
                results = [await out.get()]
                await asyncio.sleep(0)  # let results that are ready now join this batch
                while not out.empty():
                    results.append(out.get_nowait())
                if None in results:
                    open_ = False
                    results = [r for r in results if r is not None]
                if results:
                    yield host_pb2.ResultBatch(results=results)
        finally:
            reader.cancel()
            for task in list(tasks.values()):
                task.cancel()


async def start_host_server(servicer: HostServicer, bind_host: str) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    host_pb2_grpc.add_HostServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{bind_host}:0")
    await server.start()
    return server, port
