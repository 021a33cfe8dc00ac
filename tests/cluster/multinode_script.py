"""Run Solo against a two-node Ray cluster (ray.cluster_utils.Cluster) and print what happened as JSON.

Run by tests/cluster/test_multinode.py in its own process (one Ray driver per process)."""
import os
import sys
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: every node on 127.0.0.1
from ray.cluster_utils import Cluster  # noqa: E402
from scripted import report, teardown  # noqa: E402

from solo import SoloClient  # noqa: E402
from solo.config import load_config  # noqa: E402
from solo.runtime.supervisor import ThreadedSolo  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "solo" / "examples"

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
worker = cluster.add_node(num_cpus=1, resources={"edge": 1})
cluster.wait_for_nodes()
solo = None
try:
    config = load_config(None, data_dir=sys.argv[1], gateway__port=0, runtime__warm_pool_size=1)
    solo = ThreadedSolo(config, ray_address=cluster.address).start()  # what `solo up --address` does
    with SoloClient(solo.address, solo.operator_token) as client:
        edge = client.deploy(EXAMPLES / "echo.py", "edge-echo", resources={"edge": 1})
        local = client.deploy(EXAMPLES / "echo.py", "head-echo")
        result = {
            "worker_node": worker.node_id, "head_node": cluster.head_node.node_id,
            "edge_node": edge["node_id"], "local_node": local["node_id"],
            "edge_answer": client.call("edge-echo", "echo", "from the edge"),
            "embedded": solo.supervisor.embedded,
        }
        client.stop("edge-echo")
        client.stop("head-echo")
    report(result)
finally:
    teardown(solo, cluster)
