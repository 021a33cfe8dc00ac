"""Watch streams never end by themselves, so each gateway process serves a bounded number of them, and a tenant
only its share: one tenant's watchers cannot lock the others out (gRPC here; REST's SSE Watch is the same
handler)."""
from __future__ import annotations

import grpc

from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from tests.conftest import wait_for


def _one_more(stub, token: str) -> grpc.StatusCode:
    """Open a Watch and read for a second: RESOURCE_EXHAUSTED if refused, DEADLINE_EXCEEDED if it was served."""
    try:
        for _ in stub.Watch(pb.WatchRequest(filter=pb.EventFilter(types=["nothing.ever"])), timeout=1.0,
                            metadata=(("authorization", f"Bearer {token}"),)):
            pass
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_a_tenant_holds_at_most_its_share_of_watch_streams(solo, operator):
    limit = solo.supervisor.config.events.watchers_per_tenant
    hog, other = operator.mint_token("watchhog"), operator.mint_token("watchother")
    channel = grpc.insecure_channel(solo.address)
    stub = solo_pb2_grpc.GatewayStub(channel)
    held = [stub.Watch(pb.WatchRequest(filter=pb.EventFilter(types=["nothing.ever"])),
                       metadata=(("authorization", f"Bearer {hog}"),)) for _ in range(limit)]
    try:
        # the next one is refused once the held ones have started (they start asynchronously)
        assert wait_for(lambda: _one_more(stub, hog) == grpc.StatusCode.RESOURCE_EXHAUSTED, timeout=60)
        try:
            list(stub.Watch(pb.WatchRequest(), timeout=5, metadata=(("authorization", f"Bearer {hog}"),)))
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "[events] watchers_per_tenant" in err.details() and "end one first" in err.details()
        # another tenant is still served
        assert _one_more(stub, other) == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        for call in held:
            call.cancel()
    # the slots come back when the streams end
    assert wait_for(lambda: _one_more(stub, hog) == grpc.StatusCode.DEADLINE_EXCEEDED, timeout=60)
    channel.close()
