"""`solo up` locks its data directory: a second Solo on the same directory refuses to start, at once,
naming the pid of the first (two would each run a registry and an event log on the same files).

Two real processes: a real `solo up`, then a second `solo up --foreground` on its data directory."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def run(env, *args, timeout=240):
    return subprocess.run([sys.executable, "-m", "solo.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_second_solo_up_on_the_same_data_dir_fails_fast_naming_the_first(tmp_path):
    data_dir = tmp_path / "data"
    env = {**os.environ, "SOLO_DATA_DIR": str(data_dir)}
    env.pop("SOLO_ADDRESS", None)
    env.pop("SOLO_TOKEN", None)
    first = run(env, "up", "--port", "0", "--num-cpus", "1", "--no-example")
    assert first.returncode == 0, first.stderr
    state_file = data_dir / "solo.json"
    pid = json.loads(state_file.read_text())["pid"]
    try:
        assert (data_dir / "solo.lock").read_text().strip() == str(pid)
        # as if the first had not written its state yet (both started at once): only the lock stands between
        hidden = state_file.rename(data_dir / "solo.json.hidden")
        second = subprocess.Popen([sys.executable, "-m", "solo.cli", "up", "--foreground", "--port", "0",
                                   "--num-cpus", "1", "--no-example"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        started = time.monotonic()
        try:
            out, err = second.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # it started: stop it and everything it started
            os.killpg(second.pid, signal.SIGKILL)
            second.communicate()
            pytest.fail("a second `solo up` started on a data directory another Solo runs on")
        finally:
            hidden.rename(state_file)
        assert second.returncode != 0, out
        assert time.monotonic() - started < 30
        assert f"another Solo (pid {pid}) already runs on the data directory {data_dir}" in err, err
        assert "Traceback" not in err
        assert os.kill(pid, 0) is None  # the first is untouched
    finally:
        down = run(env, "down")
    assert down.returncode == 0, down.stderr
    again = run(env, "up", "--port", "0", "--num-cpus", "1", "--no-example")  # the lock went with the first
    try:
        assert again.returncode == 0, again.stderr
    finally:
        run(env, "down")
