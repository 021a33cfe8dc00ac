"""Solo with [runtime] wait_for_autoscaler on a Ray cluster (ray.cluster_utils.Cluster): a deploy asking
for a resource no node has waits; this script adds a node with it (standing in for the autoscaler) and
prints what happened as JSON. Then a deploy nobody adds a node for is stopped while it waits.

Run by tests/cluster/test_autoscaler_wait.py in its own process (one Ray driver per process)."""
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: every node on 127.0.0.1
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from scripted import report, teardown  # noqa: E402

from solo import SoloClient, SoloError  # noqa: E402
from solo.config import load_config  # noqa: E402
from solo.runtime.launcher import HOST_PREFIX  # noqa: E402
from solo.runtime.supervisor import ThreadedSolo  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "solo" / "examples"
SCHEDULE_TIMEOUT = 60.0  # generous: adding a node and starting a host on it is slow on a small machine


def asked_of_autoscaler() -> list[dict]:
    """Solo's standing request to the autoscaler, as Ray keeps it (v1: a KV entry; v2: the GCS)."""
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    if is_autoscaler_v2():
        from ray._private.state import state
        from ray.autoscaler.v2.sdk import get_cluster_resource_state
        gcs = ray._raylet.GcsClient(address=state.gcs_options.gcs_address)
        constraints = get_cluster_resource_state(gcs).cluster_resource_constraints
        return [dict(r.request.resources_bundle) for c in constraints for r in c.resource_requests
                for _ in range(r.count)]
    from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get
    raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    return json.loads(raw) if raw else []


def wait_for(what, predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def eventually(predicate, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def pending_hosts() -> list[str]:
    """Solo hosts Ray has not placed and started yet (a pending actor left behind would show here)."""
    return [a["Name"] for a in ray._private.state.actors().values()
            if a["Name"].startswith(HOST_PREFIX) and a["State"] not in ("ALIVE", "DEAD")]


def report_node_types(types) -> None:
    """What an autoscaler reports to the GCS about the node types it can add (Ray's ClusterConfig)."""
    from ray.core.generated import autoscaler_pb2
    from ray.experimental.internal_kv import _internal_kv_put
    config = autoscaler_pb2.ClusterConfig(node_group_configs=[
        autoscaler_pb2.NodeGroupConfig(name=name, resources=resources, min_count=0, max_count=most)
        for name, resources, most in types])
    _internal_kv_put(ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(), config.SerializeToString(),
                     namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode())


def in_background(fn, *args, **kwargs):
    box = {}

    def run():
        started = time.monotonic()
        try:
            box["value"] = fn(*args, **kwargs)
        except SoloError as exc:
            box["error"] = f"{exc.code}: {exc.message}"
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.wait_for_nodes()
solo = None
result = {}
try:
    config = load_config(None, data_dir=sys.argv[1], gateway__port=0, runtime__warm_pool_size=1,
                         runtime__wait_for_autoscaler=True, runtime__schedule_timeout_seconds=SCHEDULE_TIMEOUT)
    solo = ThreadedSolo(config, ray_address=cluster.address).start()
    with SoloClient(solo.address, solo.operator_token, timeout=300) as client:
        result["settled_before"] = eventually(lambda: not pending_hosts(), 120)  # the warm pool's host is up
        # 1. a resource no node has: the deploy waits, asks the autoscaler; a node with it comes; it lands there
        deploy, box = in_background(client.deploy, EXAMPLES / "echo.py", "burst-echo", resources={"burst": 1})
        result["asked"] = wait_for("the ask to the autoscaler",
                                   lambda: [b for b in asked_of_autoscaler() if b.get("burst")])
        result["pending_while_waiting"] = len(wait_for("the pending host", pending_hosts))
        result["state_while_waiting"] = client.get("burst-echo")["state"]
        burst = cluster.add_node(num_cpus=1, resources={"burst": 1})  # what the autoscaler would do
        deploy.join(SCHEDULE_TIMEOUT + 120)
        result["burst_node"] = burst.node_id
        result["head_node"] = cluster.head_node.node_id
        result["deploy"] = {"node_id": box.get("value", {}).get("node_id"), "error": box.get("error"),
                            "seconds": box.get("seconds")}
        if "value" in box:
            result["answer"] = client.call("burst-echo", "echo", "from the new node")
        result["withdrawn"] = eventually(lambda: asked_of_autoscaler() == [])

        # 2. nobody adds a node; a stop sent while the deploy waits ends the wait at once; no pending host is left
        deploy, box = in_background(client.deploy, EXAMPLES / "echo.py", "never-echo", resources={"never": 1})
        wait_for("the pending host", pending_hosts)
        stop, stop_box = in_background(client.stop, "never-echo")
        deploy.join(SCHEDULE_TIMEOUT + 120)
        stop.join(SCHEDULE_TIMEOUT + 120)
        result["never"] = {"error": box.get("error"), "seconds": box.get("seconds"), "value": "value" in box}
        result["stop"] = {"error": stop_box.get("error"), "state": stop_box.get("value", {}).get("state"),
                          "seconds": stop_box.get("seconds")}
        result["none_pending_after"] = eventually(lambda: not pending_hosts())
        result["asked_at_end"] = asked_of_autoscaler()

        # 3. the autoscaler reported its node types: a request none of them could hold is refused at once
        report_node_types([("burst-workers", {"CPU": 1, "burst": 1}, 2)])
        started = time.monotonic()
        try:
            client.deploy(EXAMPLES / "echo.py", "gpu-echo", num_gpus=1)
            result["no_type"] = {"error": None}
        except SoloError as exc:
            result["no_type"] = {"error": f"{exc.code}: {exc.message}"}
        result["no_type"]["seconds"] = time.monotonic() - started
        client.stop("burst-echo")
    report(result)
finally:
    teardown(solo, cluster)
