"""Lose a worker node under running services (ray.cluster_utils.Cluster) and print what happened as JSON.

Run by tests/cluster/test_node_failure.py in its own process (one Ray driver per process). The services ask
for a resource only the workers have, so they are placed on worker 1 (the only one with it when they are
deployed), and can only come back on worker 2 (added afterwards) once worker 1 is removed.
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: every node on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
from ray.cluster_utils import Cluster  # noqa: E402
from scripted import report, teardown  # noqa: E402

from solo import SoloClient  # noqa: E402
from solo.config import load_config  # noqa: E402
from solo.errors import SoloError  # noqa: E402
from solo.runtime.supervisor import ThreadedSolo  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "solo" / "examples"
WORKER = {"worker": 1}
graceful = sys.argv[2] != "kill" if len(sys.argv) > 2 else True
# a counter whose snapshot() answers once, once it has a state, and raises after that: after the registry
# restarts, no new snapshot can be taken, so a restored state can only come from the one kept on disk
ONCE = """
import solo


class Once(solo.Service):
    def __init__(self):
        self.value, self.given = 0, False

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def get(self) -> int:
        return self.value

    def snapshot(self):
        if self.value == 0 or self.given:
            raise RuntimeError("no snapshot now")
        self.given = True
        return {"value": self.value}

    def restore(self, state):
        self.value = state["value"]
"""


def wait_for(what: str, predicate, timeout: float = 180.0, every: float = 0.25):
    """Poll until `predicate` returns something truthy (Solo errors count as "not yet")."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except SoloError as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def snapshot_state(data_dir: Path, tenant: str, name: str):
    """The state in the registry's snapshot file of the service (a header line, then the JSON text)."""
    path = data_dir / "snapshots" / tenant / f"{name}.json"
    try:
        return json.loads(path.read_bytes().split(b"\n", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def events(client: SoloClient, types: tuple) -> list[dict]:
    return client.events(types=list(types))


data_dir = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
worker1 = cluster.add_node(num_cpus=2, resources={"worker": 4, "only1": 1})
cluster.wait_for_nodes()
solo = None
try:
    config = load_config(None, data_dir=str(data_dir), gateway__port=0, gateway__metrics_port=-1,
                         runtime__warm_pool_size=0, runtime__snapshot_seconds=1.0,
                         runtime__schedule_timeout_seconds=60.0, runtime__start_timeout_seconds=60.0,
                         runtime__restart_backoff_seconds=0.2)
    solo = ThreadedSolo(config, ray_address=cluster.address).start()
    with SoloClient(solo.address, solo.operator_token) as operator, \
            SoloClient(solo.address, operator.mint_token("alice")) as alice, \
            SoloClient(solo.address, operator.mint_token("bob")) as bob:
        before = {
            "acount": alice.deploy(EXAMPLES / "counter.py", "acount", resources=WORKER),
            "aecho": alice.deploy(EXAMPLES / "echo.py", "aecho", resources=WORKER),
            "apinned": alice.deploy(EXAMPLES / "echo.py", "apinned", resources={"only1": 1}),  # nowhere else
            "bcount": bob.deploy(ONCE, "bcount", filename="once.py", resources=WORKER),
        }
        worker2 = cluster.add_node(num_cpus=2, resources={"worker": 4})
        cluster.wait_for_nodes()
        alice.call("acount", "incr", by=5)
        bob.call("bcount", "incr", by=7)
        wait_for("alice's snapshot", lambda: snapshot_state(data_dir, "alice", "acount") == {"value": 5})
        wait_for("bob's snapshot", lambda: snapshot_state(data_dir, "bob", "bcount") == {"value": 7})
        if graceful:  # the registry restarts (Ray brings it back) and takes the hosts over, snapshots included
            import ray

            from solo.runtime.launcher import REGISTRY_NAME

            before_pid = alice.get("acount")["pid"]
            ray.kill(ray.get_actor(REGISTRY_NAME, namespace=config.namespace), no_restart=False)
            wait_for("the registry back", lambda: (i := alice.get("acount"))["state"] == "RUNNING"
                     and i["pid"] == before_pid and bob.get("bcount")["state"] == "RUNNING")

        lost_at = time.monotonic()
        cluster.remove_node(worker1, allow_graceful=graceful)

        def back(client, name):
            info = client.get(name)
            return info if info["state"] == "RUNNING" and info["node_id"] != worker1.node_id else None

        after = {"acount": wait_for("acount back", lambda: back(alice, "acount")),
                 "aecho": wait_for("aecho back", lambda: back(alice, "aecho")),
                 "bcount": wait_for("bcount back", lambda: back(bob, "bcount"))}
        seconds = time.monotonic() - lost_at
        pinned = wait_for("apinned failed", lambda: (i := alice.get("apinned"))["state"] == "FAILED" and i)
        kinds = ("node.lost", "service.rescheduled", "service.crashed", "service.restarting")
        kinds += ("service.failed",)
        alice_events = wait_for("alice's events", lambda: (e := events(alice, kinds))
                                and sum(x["type"] == "service.rescheduled" for x in e) >= 2 and e)
        bob_events = wait_for("bob's events", lambda: (e := events(bob, kinds))
                              and any(x["type"] == "service.rescheduled" for x in e) and e)
        result = {
            "worker1": worker1.node_id, "worker2": worker2.node_id, "head": cluster.head_node.node_id,
            "before": {k: v["node_id"] for k, v in before.items() if k != "apinned"},
            "after": {k: v["node_id"] for k, v in after.items()},
            "restarts": {k: v["restarts"] for k, v in after.items()},
            "pinned": {"node": before["apinned"]["node_id"], "message": pinned["message"]},
            "seconds": round(seconds, 2),
            "alice_value": alice.call("acount", "get"), "bob_value": bob.call("bcount", "get"),
            "alice_incr": alice.call("acount", "incr", by=1), "echo": alice.call("aecho", "echo", "still here"),
            "alice_events": [{"type": e["type"], "subject": e["subject"], "payload": e["payload"]} for e in alice_events],
            "bob_events": [{"type": e["type"], "subject": e["subject"], "payload": e["payload"]} for e in bob_events],
            "operator_lost": [e["tenant"] for e in operator.events(types=["node.lost"])],
        }
    report(result)
finally:
    teardown(solo, cluster)
