"""A real Solo with [tls] hosts = "all": the gateway reaches its hosts, and one service another
(solo.discover), only over mutual TLS with node certificates; the host's port refuses plaintext."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_calls_and_direct_calls_run_over_mutual_tls_and_plaintext_is_refused(tmp_path):
    script = Path(__file__).with_name("host_tls_script.py")
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=240,
                         cwd=Path(__file__).resolve().parents[2])
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["direct"] == 41
    assert result["via_discover"] == [41] * 20
    assert result["plaintext_refused"], result
    assert result["drained"] == "done"  # a stop lets the call in flight on a TLS connection finish
