"""The control capability (solo/security/control.py): the secret file and the gate around an actor class."""
from __future__ import annotations

import asyncio
import inspect
import stat

import pytest

from solo.errors import PermissionDenied
from solo.security.control import CONTROL_SECRET_FILE, gated, load_or_create, require


class Inner:
    def __init__(self, base: int, control_secret: str = ""):
        self.base, self.secret_seen = base, control_secret

    async def add(self, x: int, y: int = 0) -> int:
        return self._helper(x + y)

    def plain(self) -> str:
        return "plain"

    async def ping(self) -> bool:
        return True

    def _helper(self, value: int) -> int:
        return self.base + value


SECRET = "ab" * 32


def test_the_secret_is_created_once_private_and_kept(tmp_path):
    first = load_or_create(tmp_path)
    path = tmp_path / CONTROL_SECRET_FILE
    assert len(first) == 64 and int(first, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(tmp_path) == first  # a restart presents the same secret to the running actors


@pytest.mark.parametrize("content", ["", "short", "zz" * 32, "\x00" * 64])
def test_an_unusable_secret_file_is_replaced(tmp_path, content):
    (tmp_path / CONTROL_SECRET_FILE).write_text(content)
    secret = load_or_create(tmp_path)
    assert secret != content.strip() and len(secret) == 64
    assert (tmp_path / CONTROL_SECRET_FILE).read_text().strip() == secret


@pytest.mark.parametrize("presented", [None, "", "ab" * 31, "AB" * 32, "cd" * 32, b"ab" * 32, 42, ["x"], "é" * 64])
def test_anything_but_the_secret_is_refused(presented):
    with pytest.raises(PermissionDenied, match="only Solo's own components may call the registry"):
        require(SECRET, presented, "registry")
    require(SECRET, SECRET, "registry")


def test_the_gate_checks_every_public_method_and_hides_the_private_ones():
    Gate = gated(Inner, "registry", frozenset({"ping"}))
    assert Gate.__name__ == "Inner"
    exposed = {name for name, _ in inspect.getmembers(Gate, inspect.isfunction)}
    assert exposed == {"__init__", "add", "plain", "ping"}  # no _helper: Ray runs any method of the class by name
    assert inspect.iscoroutinefunction(Gate.add) and not inspect.iscoroutinefunction(Gate.plain)  # Ray: async actor
    gate = Gate(SECRET, 10)
    assert gate._inner.secret_seen == SECRET  # handed on to a class that asks for it
    assert asyncio.run(gate.add(SECRET, 1, y=2)) == 13
    assert gate.plain(SECRET) == "plain"
    assert asyncio.run(gate.ping()) is True  # open: no secret
    for call in (lambda: asyncio.run(gate.add("cd" * 32, 1)), lambda: asyncio.run(gate.add(1)),
                 lambda: gate.plain(None), lambda: gate.plain()):
        with pytest.raises(PermissionDenied, match="registry"):
            call()


def test_the_gate_needs_a_well_formed_secret_and_leaves_other_classes_alone():
    class NoSecret:
        def __init__(self, a):
            self.a = a

        async def get(self):
            return self.a

    Gate = gated(NoSecret, "event log")
    assert asyncio.run(Gate(SECRET, 5).get(SECRET)) == 5
    with pytest.raises(PermissionDenied, match="the event log"):
        asyncio.run(Gate(SECRET, 5).get(""))
    with pytest.raises(ValueError, match="control secret"):
        Gate("", 5)
