"""`solo up` with [events] encrypt = true: a service with secret env values, config and a vault secret is
deployed and called, tokens are minted and revoked, events are queried and watched over gRPC; then no
file under events/ holds any of it in plaintext (nor a tenant name or an event type), no decrypted event
holds a secret or a token, a start without the key stops with a clear error, and a start with it rebuilds
the registry from the encrypted log."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from solo import SoloClient
from solo.events import read_events
from solo.events.segments import segment_files
from solo.events.wal import wal_files
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

ENV_SECRET = "env-secret-Pl4intext-9931"
CONFIG_SECRET = "config-secret-Kq72-opal"
VAULT_SECRET = "vault-secret-Zz81-amber"
TENANT = "tenant-tangerine"
SERVICE = "secret-keeper"
SOURCE = """
import solo


class Keeper(solo.Service):
    def ping(self, x):
        return {"x": x, "env_set": bool(__import__("os").environ.get("DB_PASSWORD"))}

    def fail(self):
        raise RuntimeError("cannot reach postgres://app:" + __import__("os").environ["DB_PASSWORD"] + "@db/x")
"""


def test_encrypted_event_log_end_to_end(tmp_path):
    (tmp_path / "solo.toml").write_text("[events]\nencrypt = true\nroll_seconds = 0.5\n")
    env = {**os.environ, "SOLO_DATA_DIR": str(tmp_path)}

    def solo(*args):
        return subprocess.run([sys.executable, "-m", "solo.cli", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    up = solo("up", "--port", "0", "--num-cpus", "2", "--no-example")
    assert up.returncode == 0, up.stderr + up.stdout
    key_file = tmp_path / "keys" / "events.key"
    try:
        assert key_file.stat().st_mode & 0o777 == 0o600
        tokens = []
        with SoloClient(data_dir=tmp_path) as operator:
            tokens.append(operator.token)
            minted = operator.mint(TENANT, "for the encryption test")
            spare = operator.mint(TENANT, "to be revoked")
            tokens += [minted["token"], spare["token"]]
            operator.revoke_token(spare["revocation_id"], reason="leaked")
            with SoloClient(operator.address, minted["token"]) as tenant:
                tenant.put_secret("api-key", VAULT_SECRET)
                tenant.deploy(SOURCE, SERVICE, env={"DB_PASSWORD": ENV_SECRET}, config={"token": CONFIG_SECRET},
                              secrets=["api-key"])
                assert tenant.call(SERVICE, "ping", 7) == {"x": 7, "env_set": True}
                with pytest.raises(Exception, match="cannot reach"):
                    tenant.call(SERVICE, "fail")
                found = tenant.events(types=["service.deploying"])  # QueryEvents, decrypted by the gateway
                assert [e["subject"] for e in found] == [SERVICE]
                assert found[0]["payload"]["env_keys"] == ["DB_PASSWORD"]
                watched = next(tenant.watch(types=["service.started"]))  # Watch: the log actor's side
                assert watched["subject"] == SERVICE
                first_id = found[0]["id"]
            with SoloClient(operator.address, operator.mint_token("tenant-other")) as other:
                assert not [e for e in other.events() if e["tenant"] == TENANT]  # decrypted, still per tenant

            events_dir = tmp_path / "events"
            wait_for(lambda: any(p.stat().st_size and p.read_bytes()[-4:] == b"PARE"
                                 for p in segment_files(events_dir)), timeout=60)
            rows = read_events(tmp_path).to_pylist()  # this process: the key found through events/encryption.json
            assert any(r["type"] == "service.deploying" and r["tenant"] == TENANT for r in rows)
            decrypted = json.dumps(rows, default=str)
            for secret in (ENV_SECRET, CONFIG_SECRET, VAULT_SECRET, *tokens):
                assert secret not in decrypted, "a secret or a token in an event"

            assert all(p.read_bytes()[-4:] == b"PARE" for p in segment_files(events_dir))
            assert all(p.read_bytes()[:8] == b"SOLOWAE1" for p in wal_files(events_dir) if p.stat().st_size)
            for path in events_dir.rglob("*"):
                if path.is_file():
                    data = path.read_bytes()
                    for needle in (ENV_SECRET, CONFIG_SECRET, VAULT_SECRET, *tokens, TENANT, SERVICE,
                                   "service.deploying", "token.minted", "env_keys"):
                        assert needle.encode() not in data, f"{needle[:20]!r} in plaintext in {path.name}"
    finally:
        down = solo("down")
    assert down.returncode == 0, down.stderr

    # without the key: a clear error at start, nothing deleted or made anew
    key_file.rename(tmp_path / "events.key.saved")
    names = sorted(p.name for p in (tmp_path / "events").iterdir())
    refused = solo("up", "--port", "0", "--num-cpus", "2", "--no-example")
    assert refused.returncode != 0
    assert "events key" in refused.stderr and "restore it from your backup" in refused.stderr, refused.stderr
    assert not key_file.exists() and sorted(p.name for p in (tmp_path / "events").iterdir()) == names
    solo("down")

    # with it again: the registry rebuilds from the encrypted log and the service comes back
    (tmp_path / "events.key.saved").rename(key_file)
    again = solo("up", "--port", "0", "--num-cpus", "2", "--no-example")
    assert again.returncode == 0, again.stderr + again.stdout
    try:
        with SoloClient(data_dir=tmp_path) as operator, SoloClient(operator.address, tokens[1]) as tenant:
            wait_for(lambda: tenant.call(SERVICE, "ping", 8) == {"x": 8, "env_set": True}, timeout=120,
                     tolerate=(Exception,))
            assert tenant.events(types=["service.deploying"])[0]["id"] == first_id
    finally:
        solo("down")
