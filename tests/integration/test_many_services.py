"""Fifty services deployed and reachable at once (each its own Ray actor and process)."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import EXAMPLES

COUNT = 50


def test_fifty_services_at_once(alice):
    prefix = f"m{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(COUNT)]
    with ThreadPoolExecutor(8) as pool:
        infos = list(pool.map(lambda n: alice.deploy(EXAMPLES / "echo.py", n), names))
        assert all(i["state"] == "RUNNING" for i in infos)
        assert len({i["pid"] for i in infos}) == COUNT  # one process each
        answers = list(pool.map(lambda n: alice.call(n, "echo", n), names))
    assert answers == names
    listed = {s["name"]: s["state"] for s in alice.list() if s["name"].startswith(prefix)}
    assert listed == {n: "RUNNING" for n in names}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: alice.stop(n, remove=True), names))
    assert not [s for s in alice.list() if s["name"].startswith(prefix)]
