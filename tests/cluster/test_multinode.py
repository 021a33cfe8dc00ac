"""The same Solo on a multi-node Ray cluster: a service lands on the node that has what it asked for."""
from __future__ import annotations

import pytest

from tests.cluster.scripted import run_script

pytestmark = pytest.mark.slow


def test_service_is_placed_on_the_node_with_its_resource(tmp_path):
    result = run_script("multinode_script.py", tmp_path, timeout=300)
    assert result["embedded"] is False  # joined the cluster instead of starting a Ray
    assert result["edge_node"] == result["worker_node"] != result["head_node"]
    assert result["edge_answer"] == "from the edge"
