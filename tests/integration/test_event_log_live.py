"""The event log while Solo runs: the registry's events go through the sequencer; fail closed."""
from __future__ import annotations

import pytest
import ray

from solo import NotFound, Unavailable
from solo.events import read_events
from solo.runtime.event_log_actor import find_event_log, get_or_create_event_log
from tests.conftest import EXAMPLES


def test_operations_are_durable_events_before_the_reply(solo, alice, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    alice.stop(name)
    # no flush to wait for: an operation's reply comes after its events were fsynced
    rows = read_events(solo.supervisor.config.data_dir, subject=name).to_pylist()
    assert [r["type"] for r in rows] == ["service.deploying", "service.started", "service.stopped"]
    ids = read_events(solo.supervisor.config.data_dir).column("id").to_pylist()
    assert ids == list(range(1, len(ids) + 1))  # gap-free across the whole history


def test_deploy_fails_closed_when_the_log_cannot_be_written(solo, alice, name):
    config = solo.supervisor.config
    ray.kill(find_event_log(config.namespace), no_restart=True)
    try:
        with pytest.raises(Unavailable, match="event log"):
            alice.deploy(EXAMPLES / "echo.py", name)
        with pytest.raises(NotFound):
            alice.get(name)  # nothing half-done: no record, no running host
        assert name not in [s["name"] for s in alice.list()]
    finally:
        get_or_create_event_log(config.data_dir / "events", config.namespace,
                                config.events.roll_seconds, config.events.roll_rows)
    alice.deploy(EXAMPLES / "echo.py", name)  # the log is back: operations work again
    assert alice.call(name, "echo", "back") == "back"
    alice.stop(name, remove=True)
    ids = read_events(config.data_dir).column("id").to_pylist()
    assert ids == list(range(1, len(ids) + 1))
