"""[runtime] wait_for_autoscaler on a multi-node Ray cluster: a deploy asking for a resource no node has
waits for a node with it instead of FAILED_PRECONDITION at once (the flag off is
tests/integration/test_bad_input.py::test_request_ray_can_never_schedule_fails_at_once)."""
from __future__ import annotations

import pytest

from tests.cluster.scripted import run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return run_script("autoscaler_script.py", tmp_path_factory.mktemp("solo-data"), timeout=900)


def test_deploy_waits_for_a_node_with_the_resource_and_lands_on_it(result):
    assert result["settled_before"]
    assert result["state_while_waiting"] == "STARTING"
    assert result["pending_while_waiting"] == 1  # one host actor, waiting for a node
    assert result["asked"] == [{"burst": 1.0}]  # asked of the autoscaler so it scales promptly
    assert result["deploy"]["error"] is None, result["deploy"]
    assert result["deploy"]["node_id"] == result["burst_node"] != result["head_node"]
    assert result["answer"] == "from the new node"
    assert result["withdrawn"]  # placed: the autoscaler is no longer asked for it


def test_a_stop_ends_a_deploy_waiting_for_a_node_at_once_and_leaves_nothing_behind(result):
    never = result["never"]
    assert not never["value"] and "was stopped while it was starting" in never["error"], never
    stop = result["stop"]
    assert stop["error"] is None and stop["state"] == "STOPPED", stop
    assert stop["seconds"] < 30  # not held until the 60 s schedule timeout
    assert result["none_pending_after"]  # no pending actor left
    assert result["asked_at_end"] == []  # nor an ask to the autoscaler


def test_what_no_node_type_of_the_autoscaler_could_hold_is_refused_at_once(result):
    no_type = result["no_type"]
    assert no_type["error"].startswith("FAILED_PRECONDITION: no node in the cluster can ever hold this service: "
                                       "asked for num_cpus=0, num_gpus=1"), no_type
    assert "no node type the autoscaler can add has it either (burst-workers: GPU=0)" in no_type["error"]
    assert no_type["seconds"] < 30
