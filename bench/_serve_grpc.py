"""Proto-free gRPC ingress registration for Ray Serve (bench/invoke.py's `serve` anchor).

Ray Serve's gRPC proxy takes import paths of `add_XServicer_to_server(servicer, server)` functions and
reads the method table they register. This one registers solo.v1.Gateway/Invoke with no request
deserializer, so the proxy forwards the request bytes untouched and the replica parses them with Solo's
own InvokeRequest (Solo's generated classes cannot be pickled by the proxy: their module is named
`solo.v1.solo_pb2`, which is not importable). The load generator uses Solo's GatewayStub unchanged.

Importable in Serve's proxy because Ray puts the driver script's directory (bench/) on workers' path.
"""
import grpc

SERVICE = "solo.v1.Gateway"


def add_InvokeServicer_to_server(servicer, server) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Invoke": grpc.unary_unary_rpc_method_handler(servicer.Invoke)})
    server.add_generic_rpc_handlers((handler,))
