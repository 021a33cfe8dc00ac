"""A real Solo with [tls] hosts = "all": the gateway reaches its hosts, and one service another
(solo.discover), only over mutual TLS with node certificates; the host's port refuses plaintext."""
from __future__ import annotations

import pytest

from tests.cluster.scripted import run_script

pytestmark = pytest.mark.slow


def test_calls_and_direct_calls_run_over_mutual_tls_and_plaintext_is_refused(tmp_path):
    result = run_script("host_tls_script.py", tmp_path, timeout=240)
    assert result["direct"] == 41
    assert result["via_discover"] == [41] * 20
    assert result["plaintext_refused"], result
    assert result["drained"] == "done"  # a stop lets the call in flight on a TLS connection finish
