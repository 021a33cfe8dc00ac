"""kill -9 all of Solo (the solo up process group: gateway, Ray, registry, event log, hosts) during a
steady stream of operations; the next `solo up` on the same data directory loses nothing acknowledged."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from solo import SoloClient, Unauthenticated
from solo.events import read_events
from tests.conftest import EXAMPLES, wait_for

pytestmark = pytest.mark.slow


def test_kill_9_everything_then_start_again(tmp_path):
    env = {**os.environ, "SOLO_DATA_DIR": str(tmp_path)}

    def solo(*args):
        return subprocess.run([sys.executable, "-m", "solo.cli", *args], env=env, capture_output=True, text=True,
                              timeout=240)

    assert solo("up", "--port", "0", "--num-cpus", "2", "--no-example").returncode == 0
    state = json.loads((tmp_path / "solo.json").read_text())
    client = SoloClient(data_dir=tmp_path)
    client.deploy(EXAMPLES / "counter.py")
    kept, revoked = client.mint("acme")["token"], client.mint("acme")
    client.revoke_token(revoked["revocation_id"], reason="leaked")
    acknowledged: list[str] = []
    stop = threading.Event()

    def churn():  # deploy/stop a service over and over: each acknowledged step is a durable event
        i = 0
        while not stop.is_set():
            try:
                client.deploy(EXAMPLES / "echo.py", f"churn-{i % 3}")
                acknowledged.append(f"churn-{i % 3}")
                client.stop(f"churn-{i % 3}")
            except Exception:  # noqa: BLE001 - Solo is being killed
                return
            i += 1

    worker = threading.Thread(target=churn)
    worker.start()
    wait_for(lambda: len(acknowledged) >= 6, timeout=60)  # a few deploys and stops acknowledged, more in flight
    os.killpg(os.getpgid(state["pid"]), signal.SIGKILL)
    stop.set()
    worker.join(30)
    client.close()
    subprocess.run(["pkill", "-9", "-f", f"session_.*{state['pid']}"], check=False)  # nothing else of it

    ids = read_events(tmp_path).column("id").to_pylist()
    assert ids == list(range(1, len(ids) + 1))
    started = [r["subject"] for r in read_events(tmp_path, type="service.started").to_pylist()]
    assert acknowledged and all(started.count(n) >= acknowledged.count(n) for n in set(acknowledged))

    assert solo("up", "--port", "0", "--num-cpus", "2", "--no-example").returncode == 0
    try:
        with SoloClient(data_dir=tmp_path) as again:
            deadline = time.monotonic() + 60
            while again.get("counter")["state"] != "RUNNING" and time.monotonic() < deadline:
                time.sleep(0.5)
            assert again.call("counter", "incr") == 1  # back (fresh state: its process was killed)
        with SoloClient(data_dir=tmp_path, token=kept) as acme:
            assert acme.whoami()["tenant"] == "acme"  # the root key survived
        with SoloClient(data_dir=tmp_path, token=revoked["token"]) as leaked:
            with pytest.raises(Unauthenticated, match="revoked"):
                leaked.whoami()  # the revocation survived too
        ids = read_events(tmp_path).column("id").to_pylist()
        assert ids == list(range(1, len(ids) + 1))
    finally:
        solo("down")
