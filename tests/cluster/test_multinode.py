"""The same Solo on a multi-node Ray cluster: a service lands on the node that has what it asked for."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_service_is_placed_on_the_node_with_its_resource(tmp_path):
    script = Path(__file__).with_name("multinode_script.py")
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"multi-node run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["embedded"] is False  # joined the cluster instead of starting a Ray
    assert result["edge_node"] == result["worker_node"] != result["head_node"]
    assert result["edge_answer"] == "from the edge"
