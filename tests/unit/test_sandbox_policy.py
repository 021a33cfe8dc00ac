"""The cell's sandbox policy (solo/runtime/sandbox.py): what a cell is given, and refusing to run
untrusted code where bubblewrap cannot make a cell."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from solo.runtime import sandbox
from solo.runtime.sandbox import CellPolicy


@pytest.fixture
def broken_bwrap(tmp_path, monkeypatch):
    """A bwrap like the one on a kernel without user namespaces: it fails before making anything."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SOLO_BWRAP", str(fake))
    return fake


def test_a_cell_gets_new_namespaces_no_capabilities_and_read_only_system(tmp_path):
    args = sandbox.bwrap_args(CellPolicy(scratch_bytes=8 << 20))
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--clearenv"):
        assert flag in args
    assert args[args.index("--cap-drop") + 1] == "ALL" and args[args.index("--uid") + 1] == "65534"
    assert {"/", "/dev"} <= {args[i + 1] for i, a in enumerate(args) if a == "--remount-ro"}
    assert args[args.index("--tmpfs") - 1] == str(8 << 20)  # /tmp is size-capped
    binds = [args[i + 1] for i, a in enumerate(args) if a in ("--ro-bind", "--bind")]
    assert not [a for a in args if a == "--bind"], "nothing is mounted writable"
    assert not [b for b in binds if b.startswith(("/tmp/ray", str(tmp_path), os.path.expanduser("~/.solo")))]


def test_a_cells_environment_is_made_from_nothing(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("SOLO_TOKEN", "secret")
    env = sandbox.cell_env(CellPolicy())
    assert not [k for k in env if k.startswith(("RAY_", "SOLO_"))] and env["HOME"] == "/tmp"
    args = sandbox.bwrap_args(CellPolicy())
    assert "RAY_ADDRESS" not in args and "secret" not in args


def test_the_sandbox_works_on_this_machine():
    assert sandbox.probe(CellPolicy()) == ""


@pytest.mark.skipif(not os.path.isdir("/etc/ssl/private"), reason="no /etc/ssl/private on this machine")
def test_a_cell_sees_the_ca_certificates_but_not_the_machines_private_keys():
    code = "import os; print(os.path.exists('/etc/ssl/private'), os.path.isdir('/etc/ssl/certs'))"
    done = subprocess.run(sandbox.bwrap_args(CellPolicy(seccomp=False)) + [sys.executable, "-I", "-c", code],
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["False", str(os.path.isdir("/etc/ssl/certs"))], done.stderr


def test_without_namespaces_solo_refuses_unless_the_sandbox_is_switched_off(broken_bwrap):
    why = sandbox.refusal(CellPolicy())
    assert "No permissions to create new namespace" in why and 'sandbox = "off"' in why
    assert sandbox.refusal(CellPolicy(mechanism="off")) == ""


def test_solo_up_refuses_before_it_starts_anything(broken_bwrap, tmp_path):
    data = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "solo.cli", "up", "--foreground", "--data-dir", str(data),
                           "--no-example", "--port", "0"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SOLO_BWRAP": str(broken_bwrap)})
    assert done.returncode != 0
    assert 'sandbox = "off"' in done.stderr + done.stdout
    assert not (data / "solo.json").exists()


def test_a_data_dir_inside_what_cells_read_is_refused():
    inside = os.path.join(sandbox.runtime_paths()[0], "solo-data")
    with pytest.raises(sandbox.SandboxUnavailable, match="data directory"):
        sandbox.check_data_dir(inside)
    sandbox.check_data_dir("/var/lib/solo-test-data")  # outside: fine
