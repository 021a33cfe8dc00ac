"""The gRPC anchor servers bench/invoke.py runs in a subprocess. Both speak Solo's own wire contract
(solo.v1.Gateway/Invoke with InvokeRequest/InvokeResponse), so one load generator drives every system.

    python bench/_anchor_servers.py bare  --port P   # grpc.aio echo, nothing behind it
    python bench/_anchor_servers.py naive --port P   # grpc.aio + one Ray actor call per request

Prints "READY <port>" when it serves; stops on SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

import grpc

from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc


class BareEcho(solo_pb2_grpc.GatewayServicer):
    async def Invoke(self, request, context):
        return pb.InvokeResponse(json=request.json)


class NaiveGateway(solo_pb2_grpc.GatewayServicer):
    """The design Solo is compared against: every request is one Ray actor call."""

    def __init__(self, actor):
        self.actor = actor

    async def Invoke(self, request, context):
        value = await self.actor.echo.remote(json.loads(request.json))
        return pb.InvokeResponse(json=json.dumps(value))


class Echo:
    async def echo(self, message):
        return message


async def serve(kind: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if kind == "naive":
        import ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        actor = ray.remote(Echo).options(num_cpus=0).remote()
        assert await actor.echo.remote("warm") == "warm"
        servicer = NaiveGateway(actor)
    else:
        servicer = BareEcho()
    server = grpc.aio.server()
    solo_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"READY {bound}", flush=True)
    await stop.wait()
    await server.stop(0.5)
    if kind == "naive":
        import ray
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["bare", "naive"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.kind, args.port))


if __name__ == "__main__":
    main()
