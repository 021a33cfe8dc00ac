"""Event payloads hold no secret: a spec's env values and config stay out of its events, and free text a
service wrote (a crash reason) or sent (a discovery address) loses the secrets it quotes."""
from __future__ import annotations

import json

from solo.core.spec import ServiceSpec
from solo.events.redact import redact, redact_text
from solo.registry.events import event_rows
from solo.registry.state import Placement, RegistryState

PASSWORD = "hunter2-Very-Secret"
CONFIG_SECRET = "cfg-secret-5521"


def test_url_passwords_and_given_values_are_redacted():
    assert redact_text("connect postgres://app:s3cr3t@db:5432/x failed") == "connect postgres://app:***@db:5432/x failed"
    assert redact_text("see https://example.com/a:b@c") == "see https://example.com/a:b@c"  # not user info
    assert redact_text("host 10.0.0.1:5000 down") == "host 10.0.0.1:5000 down"
    assert redact_text(f"bad password {PASSWORD}!", {"DB_PASSWORD": PASSWORD, "MODE": "on"}) == \
        "bad password [env DB_PASSWORD]!"
    assert redact_text("mode on", {"MODE": "on"}) == "mode on"  # a short setting is not a secret
    assert redact({"a": ["redis://:pw1234@r:6379", 3], "b": {"c": "x"}}) == {"a": ["redis://:***@r:6379", 3],
                                                                           "b": {"c": "x"}}


def test_a_services_events_hold_env_keys_only_and_no_config_or_quoted_secret():
    state = RegistryState(max_services_per_tenant=3, clock=lambda: 1000.0)
    spec = ServiceSpec(name="db-client", source="class A:\n    pass\n", filename="a.py",
                       env={"DB_PASSWORD": PASSWORD, "DSN": f"postgres://app:{PASSWORD}@db/x"},
                       config_json=json.dumps({"api_key": CONFIG_SECRET}))
    _, record = state.plan_deploy("acme", spec, False)
    placement = Placement(address="10.0.0.1:5000", key="k", pid=7, node_id="n", node_ip="10.0.0.1", started_at=1.0,
                          methods=("x",), class_name="A")
    state.started(record, placement)
    state.crashed("acme", "db-client", record.generation, 7, f"OperationalError: could not connect to "
                  f"postgres://app:{PASSWORD}@db/x (password {PASSWORD} refused)", max_restarts=-1)
    rows, _ = event_rows(state.take_events(), {"principal": "token:x"}, {})
    text = json.dumps(rows)
    assert PASSWORD not in text and CONFIG_SECRET not in text
    deploying = next(r for r in rows if r["type"] == "service.deploying")
    assert deploying["payload"]["env_keys"] == ["DB_PASSWORD", "DSN"]
    crashed = next(r for r in rows if r["type"] == "service.crashed")
    assert crashed["payload"]["reason"] == ("OperationalError: could not connect to postgres://app:***@db/x "
                                            "(password [env DB_PASSWORD] refused)")
