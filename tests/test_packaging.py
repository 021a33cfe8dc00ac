"""The wire contract and the public surface do not drift."""
from __future__ import annotations

import subprocess
import sys

import solo
from tests.conftest import ROOT


def test_generated_proto_code_is_up_to_date(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    committed = sorted(p.name for p in (ROOT / "solo" / "_proto").glob("*.py*"))
    fresh = sorted(p.name for p in tmp_path.glob("*.py*"))
    assert fresh == committed
    for name in fresh:
        assert (tmp_path / name).read_text() == (ROOT / "solo" / "_proto" / name).read_text(), \
            f"solo/_proto/{name} is stale: run python scripts/gen_proto.py"


def test_public_surface_is_pinned():
    assert sorted(solo.__all__) == [
        "AlreadyExists", "AsyncSoloClient", "Context", "DeadlineExceeded", "FailedPrecondition", "InvalidRequest",
        "NotFound", "Overloaded", "PermissionDenied", "Service", "ServiceFailed", "SoloClient", "SoloError",
        "Unauthenticated", "Unavailable", "__version__", "adiscover", "discover"]
    for name in solo.__all__:
        assert getattr(solo, name) is not None


def test_tenant_code_can_import_solo_without_grpc():
    code = "import sys, solo; solo.Service; assert 'grpc' not in sys.modules, 'grpc imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_gateway_security_events_do_not_import_ray():
    code = ("import sys, solo.core.dispatch, solo.core.spec, solo.gateway.server, solo.security.tokens, "
            "solo.events, solo.runtime.instance, solo.registry.state, solo.client, solo.cli; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
