"""Run a Solo whose call channel is mutual TLS for every connection ([tls] hosts = "all") and print what
happened as JSON. Run by tests/cluster/test_host_tls.py in its own process (its own embedded Ray).

argv: data dir. Node certificates come from `solo certs` functions, as an operator would make them."""
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

from scripted import report, teardown

from solo import SoloClient
from solo.config import load_config
from solo.runtime.supervisor import ThreadedSolo
from solo.security import certs

data = Path(sys.argv[1])
certs.init_ca(data / "tls")
certs.issue_node(data / "tls", "this-node", out=data / "node")
config = load_config(None, data_dir=data, gateway__port=0, runtime__warm_pool_size=1,
                     tls__hosts="all", tls__node_dir=str(data / "node"))

KV = textwrap.dedent("""
    class Kv:
        def __init__(self):
            self.data = {}

        def put(self, key, value):
            self.data[key] = value

        def get(self, key):
            return self.data.get(key)
""")
SLOW = textwrap.dedent("""
    import time

    class Slow:
        def work(self, seconds):
            time.sleep(seconds)
            return "done"
""")
RELAY = textwrap.dedent("""
    import solo

    class Relay:
        def __init__(self):
            self.kv = solo.discover("kv")

        def get(self, key):
            return self.kv.call("get", key)
""")


def plaintext_refused(address: str) -> bool:
    """A client speaking the plaintext handshake to the host's port gets no Challenge: the port closes."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"\x00\x00\x00\x14" + b"\x12\x10" + b"n" * 16 + b"\x00\x00")
        sock.settimeout(5)
        try:
            return sock.recv(100) == b""
        except (ConnectionResetError, TimeoutError):
            return True


solo = ThreadedSolo(config, num_cpus=2).start()
try:
    with SoloClient(solo.address, solo.operator_token) as client:
        (data / "kv.py").write_text(KV)
        (data / "relay.py").write_text(RELAY)
        client.deploy(data / "kv.py", "kv")
        client.deploy(data / "relay.py", "relay")
        client.call("kv", "put", "a", 41)
        answers = [client.call("relay", "get", "a") for _ in range(20)]
        route = next(r for r in solo.supervisor.gateway.dispatcher.routes._routes.values() if r.name == "kv")
        result = {"direct": client.call("kv", "get", "a"), "via_discover": answers,
                  "plaintext_refused": plaintext_refused(route.address), "address": route.address}
        # a stop drains the calls in flight on relayed (TLS) connections as on handed-over ones
        (data / "slow.py").write_text(SLOW)
        client.deploy(data / "slow.py", "slow")
        box = {}
        worker = threading.Thread(target=lambda: box.setdefault("value", client.call("slow", "work", 1.0)))
        worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                s["service"] == "slow" and s["in_flight"] for s in client.metrics()["services"]):
            time.sleep(0.02)
        client.stop("slow")
        worker.join(20)
        result["drained"] = box.get("value")
    report(result)
finally:
    teardown(solo)
