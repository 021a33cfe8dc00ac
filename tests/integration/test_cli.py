"""The README's path through the `solo` command: up, deploy, call, ls, status, stop, down.

Starts its own Solo (its own embedded Ray) in the background, exactly as a user would.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cli-data")
    env = {**os.environ, "SOLO_DATA_DIR": str(data_dir)}
    env.pop("SOLO_ADDRESS", None)
    env.pop("SOLO_TOKEN", None)

    def run(*args, check=True, timeout=240):
        result = subprocess.run([sys.executable, "-m", "solo.cli", *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"solo {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    up = run("up", "--port", "0", "--num-cpus", "2")  # any free port: no race with Ray's own ports
    run.up = up
    run.data_dir = data_dir
    run.port = int(json.loads((data_dir / "solo.json").read_text())["address"].rsplit(":", 1)[1])
    yield run
    run("down", check=False)


def test_up_prints_address_and_credential(cli):
    out = cli.up.stdout
    assert f"127.0.0.1:{cli.port}" in out
    token_file = cli.data_dir / "operator.token"
    assert str(token_file) in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "example service: echo" in out
    again = cli("up", "--port", str(cli.port))
    assert "already runs" in again.stderr


def test_example_is_callable(cli):
    assert json.loads(cli("call", "echo", "echo", '"hello"').stdout) == "hello"


def test_deploy_call_ls_status_stop(cli):
    deployed = cli("deploy", str(EXAMPLES / "counter.py"), "--label", "team=core", "--config", '{"start": 10}',
                   "--env", "MODE=test", "--memory", "64MiB")
    assert "state:" in deployed.stdout and "RUNNING" in deployed.stdout
    assert json.loads(cli("call", "counter", "incr", '{"by": 2}').stdout) == 12
    listing = json.loads(cli("ls", "--json").stdout)
    assert {s["name"] for s in listing} == {"echo", "counter"}
    status = json.loads(cli("status", "counter", "--json").stdout)
    assert status["state"] == "RUNNING" and status["labels"] == {"team": "core"}
    assert int(status["resources"]["memory_bytes"]) == 64 * 1024 * 1024
    assert status["limits"].startswith("memory: ") and "watchdog" in status["limits"]  # how --memory is enforced
    human = cli("status", "counter").stdout
    for field in ("state:", "version:", "node:", "pid:", "restarts:", "resources:", "enforced:", "calls:", "errors:",
                  "uptime:"):
        assert field in human
    streamed = cli("deploy", str(EXAMPLES / "ticker.py"))
    assert streamed.returncode == 0
    assert cli("call", "ticker", "countdown", "[2]", "--stream").stdout.split() == ["2", "1", '"liftoff"']
    swapped = cli("swap", "counter", str(EXAMPLES / "counter_v2.py"), "--watch", "30")
    assert "version 2 serving (was 1)" in swapped.stdout and "state: handed over" in swapped.stdout
    assert json.loads(cli("call", "counter", "incr").stdout) == 13  # the state came along
    assert json.loads(cli("call", "counter", "history").stdout) == [13]
    back = cli("rollback", "counter")
    assert "version 1 serving again (was 2)" in back.stdout and "handed back" in back.stdout
    assert json.loads(cli("call", "counter", "get").stdout) == 13
    found = json.loads(cli("discover", "counter", "--label", "team=core", "--json").stdout)
    assert [(e["name"], e["kind"], e["labels"]) for e in found] == [("counter", "service", {"team": "core"})]
    assert "exported to tenant bob" in cli("grant", "counter", "bob").stdout
    assert json.loads(cli("grants", "--json").stdout)["given"] == [{"service": "counter", "to_tenant": "bob"}]
    assert "no longer exported" in cli("grant", "counter", "bob", "--revoke").stdout
    missing = cli("rollback", "nope", check=False)
    assert missing.returncode == 3 and "not found" in missing.stderr
    stopped = cli("stop", "counter")
    assert "STOPPED" in stopped.stdout


def test_errors_exit_non_zero_with_the_servers_message(cli, tmp_path):
    missing = cli("call", "nope", "echo", check=False)
    assert missing.returncode != 0 and "service 'nope' not found" in missing.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("class A:\n    def f(self)\n        return 1\n")
    syntax = cli("deploy", str(bad), check=False)
    assert syntax.returncode != 0 and "syntax error in bad.py, line 2" in syntax.stderr
    not_json = cli("call", "echo", "echo", "{oops", check=False)
    assert not_json.returncode != 0 and "not valid JSON" in not_json.stderr


def test_tokens_for_tenants(cli):
    minted = json.loads(cli("tokens", "mint", "carol", "--description", "ci", "--ttl", "2h", "--json").stdout)
    token = minted["token"]
    who = json.loads(cli("whoami", "--json", "--token", token).stdout)
    assert who == {"tenant": "carol", "operator": False, "token_id": minted["revocation_id"][:12]}
    # carol does not see the operator's services
    assert json.loads(cli("ls", "--json", "--token", token).stdout) == []
    # attenuate offline (public key from the data dir), then the narrower token cannot list or deploy
    narrow = json.loads(cli("tokens", "attenuate", "--token", token, "--service", "kv", "--right", "invoke",
                            "--ttl", "10m", "--json").stdout)["token"]
    blocks = json.loads(cli("tokens", "inspect", "--token", narrow, "--json").stdout)["blocks"]
    assert len(blocks) == 2 and 'tenant("carol")' in blocks[0] and '"kv"' in blocks[1]
    denied = cli("ls", "--token", narrow, check=False)
    assert denied.returncode != 0 and "does not allow discover" in denied.stderr
    assert json.loads(cli("whoami", "--json", "--token", narrow).stdout)["tenant"] == "carol"
    listed = json.loads(cli("tokens", "list", "--tenant", "carol", "--json").stdout)
    assert [(t["revocation_id"], t["description"], t["revoked"]) for t in listed] == \
        [(minted["revocation_id"], "ci", False)]
    cli("tokens", "revoke", minted["revocation_id"][:16], "--reason", "test")  # the ID `tokens list` shows
    for t in (token, narrow):  # revoking the parent revokes what was derived from it
        gone = cli("whoami", "--token", t, check=False)
        assert gone.returncode != 0 and "revoked" in gone.stderr
    assert json.loads(cli("tokens", "list", "--tenant", "carol", "--json").stdout)[0]["revoked"] is True
    keys = json.loads(cli("keys", "list", "--json").stdout)
    assert [k["key_id"] for k in keys] == [1] and keys[0]["active"]


def test_events_command(cli):
    out = cli("events", "--type", "service.started").stdout
    assert "service.started" in out and "echo" in out
    rows = [json.loads(line) for line in cli("events", "--json", "--since", "1h").stdout.splitlines()]
    assert rows and all({"id", "time_us", "tenant", "type", "subject", "payload"} <= set(r) for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    bad = cli("events", "--since", "yesterday-ish", check=False)
    assert bad.returncode != 0 and "cannot read --since" in bad.stderr


def test_down_keeps_the_events_and_up_brings_back_what_was_running(cli):
    """Self-contained (no earlier test's state is assumed): echo and ticker running, counter stopped by
    hand; `solo down` records the suspensions; `solo up` brings back exactly what was running."""
    def states():
        return {s["name"]: s["state"] for s in json.loads(cli("ls", "--json").stdout)}

    now = states()
    if "ticker" not in now:
        cli("deploy", str(EXAMPLES / "ticker.py"))
    if "counter" not in now:
        cli("deploy", str(EXAMPLES / "counter.py"))
    if states().get("counter") != "STOPPED":
        cli("stop", "counter")
    assert states() == {"echo": "RUNNING", "ticker": "RUNNING", "counter": "STOPPED"}
    cli("down")
    assert not (cli.data_dir / "solo.json").exists()
    from solo.events import read_events
    events = read_events(cli.data_dir).to_pylist()
    assert {"service.deploying", "service.started", "service.stopped"} <= {e["type"] for e in events}
    assert [e["type"] for e in events if e["subject"] == "ticker"][-1] == "service.suspended"
    assert "not running" in cli("down").stderr

    cli("up", "--port", "0", "--num-cpus", "2", "--no-example")
    try:
        import time
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and states() != {"echo": "RUNNING", "ticker": "RUNNING",
                                                           "counter": "STOPPED"}:
            time.sleep(0.5)
        assert states() == {"echo": "RUNNING", "ticker": "RUNNING", "counter": "STOPPED"}
        assert json.loads(cli("call", "echo", "echo", '"again"').stdout) == "again"
        types = [json.loads(line)["type"] for line in cli("events", "--json", "--subject", "ticker").stdout.splitlines()]
        assert types[-2:] == ["service.suspended", "service.recovered"]
    finally:
        cli("down")
