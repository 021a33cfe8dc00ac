"""The gateway serves the standard gRPC health and reflection services, so grpcurl-style tools work."""
from __future__ import annotations

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def test_health_serving(solo):
    with grpc.insecure_channel(solo.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "solo.v1.Gateway"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service)).status == \
                health_pb2.HealthCheckResponse.SERVING


def test_reflection_describes_the_gateway(solo):
    with grpc.insecure_channel(solo.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"solo.v1.Gateway", "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool(database)
        gateway = pool.FindServiceByName("solo.v1.Gateway")
        methods = {m.name for m in gateway.methods}
        assert {"DeployService", "GetService", "ListServices", "StopService", "Invoke", "InvokeStream",
                "GetMetrics"} <= methods
        assert pool.FindMessageTypeByName("solo.v1.InvokeRequest").fields_by_name["json"]


def test_unauthenticated_raw_call_is_rejected_with_a_message(solo):
    from solo._proto import solo_pb2 as pb
    from solo._proto import solo_pb2_grpc
    with grpc.insecure_channel(solo.address) as channel:
        try:
            solo_pb2_grpc.GatewayStub(channel).Invoke(pb.InvokeRequest(service="echo", method="echo"))
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer" in err.details()
        else:
            raise AssertionError("an unauthenticated call went through")
