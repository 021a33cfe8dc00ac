"""No secret in an event, on the shared (plaintext) Solo: a service deployed with secret env values and
config, called, crashed with an error that quotes its password; tokens minted and revoked. Then every
event file (Parquet segments and WAL, raw bytes) and every event as read back holds none of them,
while the same grep does find the service's name (so it would have found a secret)."""
from __future__ import annotations

import json

from solo import SoloClient
from solo.events import read_events
from solo.events.segments import segment_files, segment_range
from tests.conftest import source, wait_for

ENV_SECRET = "env-Secret-value-55ab19"
CONFIG_SECRET = "cfg-Secret-value-83ce02"

SERVICE = source("""
    import os
    import solo


    class Leaky(solo.Service):
        def __init__(self):
            if os.environ.get("FAIL"):  # a start that fails quoting its secret, as a driver's error would
                raise RuntimeError("connect to postgres://app:" + os.environ["DB_PASSWORD"] + "@db/x: password "
                                   + os.environ["DB_PASSWORD"] + " refused")

        def ping(self):
            return "pong"

        def die(self):
            os._exit(3)
""")


def test_no_secret_or_token_in_any_event_file(solo, operator, name):
    minted = operator.mint("payloadco", "secrets test")
    spare = operator.mint("payloadco", "revoked in the test")
    operator.revoke_token(spare["revocation_id"], reason="test")
    tokens = [operator.token, minted["token"], spare["token"]]
    with SoloClient(solo.address, minted["token"]) as tenant:
        tenant.deploy(SERVICE, name, env={"DB_PASSWORD": ENV_SECRET, "LEVEL": "debug"},
                      config={"api_token": CONFIG_SECRET}, max_restarts=0)
        assert tenant.call(name, "ping") == "pong"
        try:
            tenant.call(name, "die")
        except Exception:  # noqa: BLE001 - the process exits: the call fails, the crash is the point
            pass
        wait_for(lambda: tenant.events(types=["service.crashed"], subject=name), timeout=60)
        try:
            tenant.deploy(SERVICE, f"{name}-f", env={"DB_PASSWORD": ENV_SECRET, "FAIL": "1"})
        except Exception:  # noqa: BLE001 - its start fails: the event's reason is the point
            pass
        failed = wait_for(lambda: tenant.events(types=["service.failed"], subject=f"{name}-f"), timeout=60)
        deploy_id = failed[-1]["id"]
    reason = failed[-1]["payload"]["reason"]
    assert "postgres://app:***@db/x" in reason and "password [env DB_PASSWORD] refused" in reason, reason

    data_dir = solo.supervisor.config.data_dir
    events = data_dir / "events"
    wait_for(lambda: any(segment_range(p)[1] >= deploy_id for p in segment_files(events)), timeout=60)
    rows = read_events(data_dir).to_pylist()
    decoded = json.dumps([r for r in rows if r["tenant"] == "payloadco" or r["type"].startswith("token.")],
                         default=str)
    assert name in decoded
    for secret in (ENV_SECRET, CONFIG_SECRET, *tokens):
        assert secret not in decoded, f"{secret[:12]}... in an event"
    seen_name = False
    for path in events.iterdir():
        if path.is_file():
            data = path.read_bytes()
            seen_name = seen_name or name.encode() in data
            for secret in (ENV_SECRET, CONFIG_SECRET, *tokens):
                assert secret.encode() not in data, f"{secret[:12]}... in {path.name}"
    assert seen_name, "the grep never found the service's own name: it could not have found a secret either"
