"""Refuse, place or wait for the autoscaler (solo/core/placement.py): plain data in, a verdict out."""
from __future__ import annotations

from solo.core.placement import AutoscalerAsks, NodeType, decide, timeout_message, wanted
from solo.core.spec import Resources

CPU_NODE = {"CPU": 2.0, "memory": 4e9}
GPU_TYPE = NodeType("gpu-workers", {"CPU": 8, "GPU": 1}, max_count=4)
CPU_TYPE = NodeType("cpu-workers", {"CPU": 16}, max_count=-1)


def test_wanted_leaves_out_zeros():
    assert wanted(Resources()) == {}
    assert wanted(Resources(num_cpus=1, num_gpus=0, memory_bytes=0, custom={"tpu": 2})) == {"CPU": 1, "tpu": 2}


def test_a_request_some_node_holds_is_placed_whatever_the_flag():
    for flag in (False, True):
        assert decide(Resources(num_cpus=2), [CPU_NODE], None, flag).action == "place"
        assert decide(Resources(), [], None, flag).action == "place"  # asks for nothing


def test_without_the_flag_a_request_no_node_holds_is_refused_at_once():
    verdict = decide(Resources(num_gpus=1), [CPU_NODE, {"CPU": 1}], [GPU_TYPE], wait_for_autoscaler=False)
    assert verdict.action == "refuse"
    assert "no node in the cluster can ever hold this service: asked for num_cpus=0, num_gpus=1" in verdict.message
    assert "the largest node has GPU=0 (2 node(s))" in verdict.message
    assert "add a node that has it" in verdict.message


def test_with_the_flag_and_no_known_node_types_it_waits():
    assert decide(Resources(custom={"burst": 1}), [CPU_NODE], None, wait_for_autoscaler=True).action == "wait"


def test_with_the_flag_it_waits_when_a_node_type_could_hold_it():
    assert decide(Resources(num_gpus=1, num_cpus=4), [CPU_NODE], [CPU_TYPE, GPU_TYPE], True).action == "wait"
    assert decide(Resources(num_cpus=12), [CPU_NODE], [CPU_TYPE, GPU_TYPE], True).action == "wait"


def test_with_the_flag_it_refuses_what_no_node_type_could_hold_either():
    verdict = decide(Resources(num_gpus=2), [CPU_NODE], [CPU_TYPE, GPU_TYPE], True)
    assert verdict.action == "refuse"
    assert "the largest node has GPU=0 (1 node(s))" in verdict.message
    assert "no node type the autoscaler can add has it either (cpu-workers: GPU=0; gpu-workers: GPU=1)" \
        in verdict.message
    # one node type must hold all of it: CPU from one and GPU from another is no node
    assert decide(Resources(num_gpus=1, num_cpus=16), [CPU_NODE], [CPU_TYPE, GPU_TYPE], True).action == "refuse"


def test_a_node_type_that_can_never_be_added_does_not_count():
    none_allowed = NodeType("gpu-workers", {"GPU": 4}, max_count=0)
    verdict = decide(Resources(num_gpus=1), [CPU_NODE], [none_allowed], True)
    assert verdict.action == "refuse" and "(none)" in verdict.message


def test_timeout_message_says_the_autoscaler_did_not_add_a_node():
    text = timeout_message(Resources(custom={"burst": 1}), 30, [CPU_NODE], "CPU=2", wait_for_autoscaler=True)
    assert text.startswith("Ray could not place the service within 30s: asked for num_cpus=0, burst=1")
    assert "no node in the cluster has it (the largest node has burst=0, 1 node(s))" in text
    assert "the autoscaler did not add one in time" in text and "schedule_timeout_seconds" in text


def test_timeout_message_when_a_node_has_it_but_it_is_taken():
    for flag in (False, True):
        text = timeout_message(Resources(custom={"slot": 1}), 4, [{"slot": 1.0}], "CPU=2, slot=0", flag)
        assert text == ("Ray could not place the service within 4s: asked for num_cpus=0, slot=1; "
                        "available now: CPU=2, slot=0. Stop other services or ask for less")


def test_autoscaler_asks_keep_every_waiting_host_and_withdraw_when_none_is_left():
    asks = AutoscalerAsks()
    first, sent = asks.add({"GPU": 1.0})
    assert sent == [{"GPU": 1.0}]
    second, sent = asks.add({"burst": 2.0})
    assert sent == [{"GPU": 1.0}, {"burst": 2.0}]  # Ray replaces the request: always the whole list
    assert asks.remove(first) == [{"burst": 2.0}]
    assert asks.remove(first) is None  # already withdrawn: nothing to send
    assert asks.remove(second) == []  # the empty list withdraws Solo's request
