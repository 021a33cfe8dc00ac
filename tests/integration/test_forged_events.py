"""Forged and malformed event rows never stop a restart.

A second Solo (its own data directory and namespace, on the session's Ray) gets a service, a grant
and a revoked token; then rows are appended straight to its event-log actor with the control secret,
as an attacker who had it would: payloads that are not JSON, JSON lists, missing keys, wrong types,
huge numbers, null bytes (a time past year 9999 is refused at append). Its checkpoint is corrupted
too. After `solo down` and `solo up` on the same data directory it comes back with its service, its
grant and its revocation, and a token the forged rows tried to revoke in a wrong shape stays valid.
"""
from __future__ import annotations

import json

import pytest
import ray

from solo import SoloClient, Unauthenticated
from solo.events import read_events
from solo.registry.rebuild import CHECKPOINT_FILE
from solo.runtime.event_log_actor import EVENT_LOG_NAME
from tests.conftest import EXAMPLES
from tests.conftest import wait_for as _wait_for

NAMESPACE = "solo-forged-events"


def forged_rows(service: str, revoked_id: str, valid_id: str) -> list[dict]:
    def row(kind, payload, subject=service, tenant="carol", **extra):
        return {"tenant": tenant, "type": kind, "subject": subject, "principal": "mallory",
                "payload": payload if isinstance(payload, str) else json.dumps(payload), **extra}

    bad_payloads = ["not json", "[1, 2]", "null", "42", "1" * 5000, "[" * 50_000, "{\"a\": \"\x00\"}", "\x00"]
    return [
        *[row("token.revoked", p, subject="x") for p in bad_payloads],
        row("token.revoked", {}), row("token.revoked", {"revocation_id": None}),
        row("token.revoked", {"revocation_id": [valid_id]}), row("token.revoked", {"revocation_id": valid_id.upper()}),
        row("token.revoked", {"revocation_id": valid_id + "\x00"}), row("token.revoked", {"revocation_id": 10 ** 40}),
        row("token.revoked", {"revocation_id": revoked_id, "reason": {"nested": [1]}}),  # well formed: applies
        row("token.minted", "[]", subject="y"), row("token.minted", {"revocation_id": 5}, subject="y"),
        *[row("service.stopped", p) for p in bad_payloads],                 # would stop the service if applied
        row("service.failed", {"reason": ["x"]}), row("service.removed", "[]"),
        row("service.started", {"pid": 10 ** 30, "host": "h"}), row("service.restarting", {"attempt": -1}),
        row("service.deploying", {"spec": 5, "version": "9", "generation": 9}),
        row("service.deploying", {"spec": "ab", "version": "9", "generation": "9"}),
        row("service.stopped", {}, subject="../../" + service), row("service.stopped", {}, tenant="carol\x00"),
        row("discovery.grant_revoked", "not json"), row("discovery.grant_revoked", {"service": service}),
        row("discovery.grant_revoked", {"service": service, "to_tenant": ["dave"]}),
        row("discovery.granted", {"service": service, "to_tenant": "dave\x00"}),
    ]


@pytest.fixture
def second_solo(solo, tmp_path):
    """A Solo of its own on the session's Ray: `start()` is `solo up`, `start.stop(solo)` is `solo down`."""
    from solo.config import load_config
    from solo.runtime.supervisor import ThreadedSolo

    config = load_config(None, data_dir=str(tmp_path / "data"), namespace=NAMESPACE, gateway__port=0,
                         gateway__metrics_port=-1, runtime__warm_pool_size=0, runtime__restart_backoff_seconds=0.2,
                         runtime__start_timeout_seconds=30.0, runtime__stop_grace_seconds=2.0,
                         events__checkpoint_seconds=1.0)
    running = []

    def start():
        running.append(ThreadedSolo(config).start())
        return running[-1]

    def stop(instance):
        running.remove(instance)
        instance.stop()

    start.stop = stop
    yield start
    for instance in running:
        instance.stop()


def wait_for(predicate, timeout=60.0, **options):
    return _wait_for(predicate, timeout, **{"every": 0.3, "tolerate": (Exception,), **options})


def test_forged_rows_and_a_corrupt_checkpoint_do_not_stop_a_restart(second_solo):
    first = second_solo()
    data_dir = first.supervisor.config.data_dir
    with SoloClient(first.address, first.operator_token) as operator:
        carol_token = operator.mint_token("carol")
        revoked = operator.mint("carol", "to revoke")
        kept = operator.mint("carol", "kept")
        operator.revoke_token(revoked["revocation_id"], reason="leaked")
        with SoloClient(first.address, carol_token) as carol:
            carol.deploy(EXAMPLES / "counter.py", "ledger")
            assert carol.call("ledger", "incr", by=3) == 3
            carol.grant("ledger", "dave")

    events = ray.get_actor(EVENT_LOG_NAME, namespace=NAMESPACE)
    secret = first.supervisor.control_secret
    rows = forged_rows("ledger", revoked["revocation_id"], kept["revocation_id"])
    first_id, last_id = ray.get(events.append.remote(secret, rows), timeout=30)
    assert last_id - first_id + 1 == len(rows)
    far_future = [{"tenant": "carol", "type": "service.deploying", "subject": "ghost", "time": 1e12,  # year ~33658
                   "payload": json.dumps({"spec": "ab", "version": "1", "generation": 1})}]
    with pytest.raises(ray.exceptions.RayTaskError, match="between 1970 and the year 10000"):
        ray.get(events.append.remote(secret, far_future), timeout=30)  # no reader could read it back

    second_solo.stop(first)  # `solo down`: reaches the actors with the secret, suspends, stops them
    types = read_events(data_dir, subject="ledger").column("type").to_pylist()
    assert types[-1] == "service.suspended", types
    with pytest.raises(ValueError):
        ray.get_actor(EVENT_LOG_NAME, namespace=NAMESPACE)
    (data_dir / CHECKPOINT_FILE).write_text('{"last_id": "everything", "services": [')  # a torn, bad checkpoint

    again = second_solo()  # `solo up` on the same data directory
    assert again.supervisor.control_secret == secret
    with SoloClient(again.address, again.operator_token) as operator, \
            SoloClient(again.address, carol_token) as carol:
        info = wait_for(lambda: (i := carol.get("ledger"))["state"] == "RUNNING" and i)
        assert info["version"] == "1"
        assert carol.call("ledger", "incr") == 1  # started again: the constructor's state
        assert carol.grants()["given"] == [{"service": "ledger", "to_tenant": "dave"}]
        assert {s["name"] for s in carol.list()} == {"ledger"}
        with SoloClient(again.address, revoked["token"]) as client, pytest.raises(Unauthenticated, match="revoked"):
            client.whoami()
        with SoloClient(again.address, kept["token"]) as client:
            assert client.whoami()["tenant"] == "carol"  # the forged rows naming it in a wrong shape did nothing
        listed = {t["revocation_id"]: t["revoked"] for t in operator.list_tokens("carol")}
        assert listed[revoked["revocation_id"]] is True and listed[kept["revocation_id"]] is False
        # the rebuilt registry wrote a good checkpoint again
        assert wait_for(lambda: json.loads((data_dir / CHECKPOINT_FILE).read_text())["last_id"] > last_id)
