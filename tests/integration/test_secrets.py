"""The vault with real Solo: secrets put, read, listed, removed and injected into services; tenants kept apart,
attenuated tokens kept to their keys, values kept out of everything Solo writes."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from solo import InvalidRequest, NotFound, PermissionDenied, SoloClient
from solo.errors import SoloError
from solo.security.capabilities import attenuate
from solo.security.keys import KeyRing
from tests.conftest import source, wait_for

READER = source("""
    import os
    import solo

    class Reader(solo.Service):
        def secret(self, key):
            return self.context.secrets[key]

        def keys(self):
            return sorted(self.context.secrets)

        def shown(self):
            return repr(self.context)

        def crash(self):
            os._exit(3)
""")


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def plaintext() -> bytes:
    return f"PLAINTEXT-{uuid.uuid4().hex}".encode()


def data_dir(solo) -> Path:
    return solo.supervisor.config.data_dir


def files_holding(roots, needle: bytes) -> list[str]:
    found = []
    for root in roots:
        for path in Path(root).rglob("*"):
            try:
                if path.is_file() and needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def ray_logs() -> list[Path]:
    import ray
    try:
        return [Path(ray._private.worker._global_node.get_logs_dir_path())]
    except Exception:  # noqa: BLE001 - a private API: without it only the data directory is searched
        return []


def narrowed(solo, client, patterns) -> SoloClient:
    token = attenuate(client.token, KeyRing(data_dir(solo) / "keys").public_key, secrets=patterns)
    return SoloClient(solo.address, token)


def test_put_get_list_versions_remove(alice):
    key = unique("db/")
    assert alice.put_secret(key, b"one") == {"key": key, "version": 1}
    assert alice.put_secret(key, "two")["version"] == 2
    assert alice.get_secret(key)["value"] == b"two"
    assert alice.get_secret(key, 1)["value"] == b"one"
    listed = [s for s in alice.list_secrets("db/") if s["key"] == key]
    assert [(s["version"], s["versions"]) for s in listed] == [(2, 2)]
    assert "value" not in listed[0]
    with pytest.raises(NotFound, match="no version 7"):
        alice.get_secret(key, 7)
    assert alice.delete_secret(key) == 2
    with pytest.raises(NotFound):
        alice.get_secret(key)
    assert not [s for s in alice.list_secrets() if s["key"] == key]


def test_another_tenant_cannot_read_list_overwrite_remove_or_detect(alice, bob):
    key, value = unique("shared/"), plaintext()
    alice.put_secret(key, value)
    with pytest.raises(NotFound) as theirs:
        bob.get_secret(key)
    with pytest.raises(NotFound) as missing:
        bob.get_secret(key + "-never-put")
    assert str(theirs.value).replace(key, "K") == str(missing.value).replace(key + "-never-put", "K")
    with pytest.raises(NotFound):
        bob.delete_secret(key)
    assert key not in [s["key"] for s in bob.list_secrets()]
    assert bob.put_secret(key, b"bob's own") == {"key": key, "version": 1}  # a key of bob's, not a version of alice's
    assert alice.get_secret(key)["value"] == value
    assert bob.get_secret(key)["value"] == b"bob's own"
    # the events of alice's secret are alice's
    assert not [e for e in bob.events(types=["secret.put", "secret.read"]) if e.get("tenant") == "alice"]


def test_an_attenuated_token_reaches_only_its_keys(solo, alice):
    tag = unique()
    alice.put_secret(f"db{tag}/x", b"db value")
    alice.put_secret(f"api{tag}/y", b"api value")
    with narrowed(solo, alice, [f"db{tag}/*"]) as only_db:
        assert only_db.get_secret(f"db{tag}/x")["value"] == b"db value"
        with pytest.raises(PermissionDenied):
            only_db.get_secret(f"api{tag}/y")
        with pytest.raises(PermissionDenied):
            only_db.put_secret(f"api{tag}/y", b"overwritten")
        with pytest.raises(PermissionDenied):
            only_db.delete_secret(f"api{tag}/y")
        assert [s["key"] for s in only_db.list_secrets(f"db{tag}/")] == [f"db{tag}/x"]
        with pytest.raises(PermissionDenied):
            only_db.list_secrets()  # everything: more than the token may see
        assert only_db.put_secret(f"db{tag}/x", b"v2")["version"] == 2
    with narrowed(solo, alice, [f"db{tag}/x"]) as one_key:
        # a prefix the token allows as a key lists only what it may read (not db{tag}/x2's name)
        alice.put_secret(f"db{tag}/x2", b"other")
        assert [s["key"] for s in one_key.list_secrets(f"db{tag}/x")] == [f"db{tag}/x"]
    assert alice.get_secret(f"api{tag}/y")["value"] == b"api value"


def test_a_service_gets_its_secrets_and_nothing_solo_writes_holds_them(solo, alice, bob, name):
    key, value = unique("db/") + "/password", plaintext()
    alice.put_secret(key, value)
    alice.deploy(READER, name, secrets=[key])
    assert alice.call(name, "secret", key) == value.decode()
    assert alice.call(name, "keys") == [key]
    assert value.decode() not in alice.call(name, "shown")  # the context's repr names keys only
    status = alice.get(name)
    assert value.decode() not in str(status)
    # a new version reaches the service at its next start (here: a restart after a crash)
    second = plaintext()
    alice.put_secret(key, second)
    assert alice.call(name, "secret", key) == value.decode()
    with pytest.raises(SoloError):
        alice.call(name, "crash")
    wait_for(lambda: alice.call(name, "secret", key) == second.decode(), timeout=90, tolerate=(SoloError,))
    # one event per start: the first, and the restart's (written with the restart's events, maybe after routing)
    injected = wait_for(lambda: (found := alice.events(types=["secret.injected"], subject=name)) and len(found) >= 2
                        and found, timeout=30)
    assert [e["payload"]["secrets"] for e in injected[:2]] == [{key: 1}, {key: 2}], injected
    assert not [e for e in bob.events(types=["secret.injected"]) if e.get("subject") == name]
    alice.stop(name, remove=True)
    # the events are rolled into Parquet within [events] roll_seconds; the spec files, WAL, segments, vault files
    # and Ray's logs (Solo's logs among them) are searched for both values
    wait_for(lambda: list((data_dir(solo) / "events").rglob("*.parquet")), timeout=30)
    assert ray_logs() and files_holding([data_dir(solo)], key.encode())  # the search finds what is there: the key
    for secret in (value, second):
        assert files_holding([data_dir(solo), *ray_logs()], secret) == []


def test_a_swap_hands_the_new_version_the_newest_values(alice, name):
    key = unique("swap/")
    alice.put_secret(key, b"first")
    alice.deploy(READER, name, secrets=[key])
    alice.put_secret(key, b"second")
    assert alice.call(name, "secret", key) == "first"  # until its next start
    alice.swap(name, READER.replace("def keys(self)", "def keys2(self)"), watch_seconds=0)
    assert alice.call(name, "secret", key) == "second"
    alice.stop(name, remove=True)


def test_deploys_and_swaps_need_secrets_read_on_each_key(solo, alice, name):
    key = unique("db/")
    with pytest.raises(NotFound, match="put it first"):
        alice.deploy(READER, name, secrets=[key])
    alice.put_secret(key, b"v")
    with narrowed(solo, alice, ["other/*"]) as other:
        with pytest.raises(PermissionDenied, match=key):
            other.deploy(READER, name, secrets=[key])
    with pytest.raises(InvalidRequest, match="invalid secret key"):
        alice.deploy(READER, name, secrets=["not a key"])
    alice.deploy(READER, name, secrets=[key])
    with narrowed(solo, alice, ["other/*"]) as other:
        with pytest.raises(PermissionDenied, match=key):
            other.swap(name, READER.replace("def keys", "def keys2"))
    alice.delete_secret(key)  # removed while running: the next start fails and says why
    with pytest.raises(SoloError):
        alice.call(name, "crash")
    wait_for(lambda: alice.get(name)["state"] == "FAILED" or "no longer in the vault" in alice.get(name)["message"],
             timeout=90)
    assert "no longer in the vault" in alice.get(name)["message"]
    alice.stop(name, remove=True)


def test_rotation_by_the_operator_keeps_every_secret_readable(alice, operator):
    key, value = unique("rot/"), plaintext()
    alice.put_secret(key, value)
    with pytest.raises(PermissionDenied, match="only the operator"):
        alice.rotate_master_key()
    rotated = operator.rotate_master_key()
    assert rotated["rewrapped"] >= 1
    assert alice.get_secret(key)["value"] == value
    events = wait_for(lambda: operator.events(types=["vault.key_rotated"]), timeout=30)
    assert events[-1]["subject"] == "vault"


def test_bad_input_gets_a_clear_status(alice):
    for bad in ("", "a b", "x" * 128, "db/*", "ключ"):
        with pytest.raises(InvalidRequest, match="invalid secret key"):
            alice.put_secret(bad, b"v")
        with pytest.raises(InvalidRequest, match="invalid secret key"):
            alice.get_secret(bad)
    with pytest.raises(InvalidRequest, match="max_secret_bytes"):
        alice.put_secret(unique("big/"), b"x" * (64 * 1024 + 1))
    with pytest.raises(NotFound):
        alice.delete_secret(unique("none/"))


def test_the_cli(solo, alice):
    key, value = unique("cli/"), plaintext()
    env = {**os.environ, "SOLO_ADDRESS": solo.address, "SOLO_TOKEN": alice.token}

    def run(*args, stdin: bytes = b""):
        result = subprocess.run([sys.executable, "-m", "solo.cli", "secrets", *args], env=env, input=stdin,
                                capture_output=True, timeout=120)
        return result.returncode, result.stdout, result.stderr

    assert run("put", key, stdin=value)[0] == 0  # from stdin: not in the shell's history
    code, out, _ = run("get", key)
    assert code == 0 and out == value
    assert run("put", key, "second")[0] == 0
    code, out, _ = run("get", key, "--version", "1")
    assert out == value
    code, out, _ = run("ls", "cli/")
    assert key.encode() in out and value not in out
    code, _, err = run("get", "bad key")
    assert code != 0 and b"invalid secret key" in err
    code, _, err = run("rotate")
    assert code != 0 and b"only the operator" in err
    code, out, _ = run("rm", key)
    assert code == 0 and b"2 versions" in out
    code, _, err = run("get", key)
    assert code != 0 and b"not found" in err


def test_vault_calls_are_limited_per_tenant(solo, operator, alice):
    from solo import Overloaded
    from solo.gateway.secrets_rpc import VAULT_CALLS

    tenant = "rate" + uuid.uuid4().hex[:8]
    with SoloClient(solo.address, operator.mint_token(tenant)) as hasty:
        with pytest.raises(Overloaded, match="vault calls") as refused:
            for _ in range(int(VAULT_CALLS.burst * 4)):
                hasty.list_secrets()
        assert refused.value.retry_after > 0
    assert alice.list_secrets("none-such/") == []  # another tenant is not held up


def test_a_restarted_registry_reopens_the_vault_and_still_injects(solo, alice, name):
    import ray

    from solo.registry.actor import REGISTRY_NAME

    key, value = unique("reg/"), plaintext()
    alice.put_secret(key, value)
    alice.deploy(READER, name, secrets=[key])
    ray.kill(ray.get_actor(REGISTRY_NAME, namespace=solo.supervisor.config.namespace), no_restart=False)
    wait_for(lambda: alice.get_secret(key)["value"] == value, timeout=90, tolerate=(SoloError,))
    with pytest.raises(SoloError):
        alice.call(name, "crash")  # restarted by the new registry, which reads the value from the vault again
    wait_for(lambda: alice.get(name)["restarts"] >= 1 and alice.call(name, "secret", key) == value.decode(),
             timeout=90, tolerate=(SoloError,))
    alice.stop(name, remove=True)


def test_a_head_restart_starts_the_service_again_with_its_secrets(solo, tmp_path_factory):
    """`solo down` then `solo up` on the same data directory: the rebuilt registry starts the service again,
    reading its secret from the vault it reopens (the master key in the data directory)."""
    from solo.config import load_config
    from solo.runtime.supervisor import ThreadedSolo

    config = load_config(None, data_dir=str(tmp_path_factory.mktemp("vault-head")), namespace="solo-vault-head",
                         gateway__port=0, gateway__metrics_port=-1, runtime__warm_pool_size=0,
                         runtime__start_timeout_seconds=30.0, runtime__stop_grace_seconds=2.0)
    key, value = "db/password", plaintext()
    first = ThreadedSolo(config).start()
    try:
        with SoloClient(first.address, first.operator_token) as operator:
            token = operator.mint_token("acme")
        with SoloClient(first.address, token) as acme:
            acme.put_secret(key, value)
            acme.deploy(READER, "app", secrets=[key])
            assert acme.call("app", "secret", key) == value.decode()
    finally:
        first.stop()
    second = ThreadedSolo(config).start()
    try:
        with SoloClient(second.address, token) as acme:
            wait_for(lambda: acme.call("app", "secret", key) == value.decode(), timeout=90, tolerate=(SoloError,))
            assert acme.get_secret(key)["value"] == value
            acme.stop("app", remove=True)
    finally:
        second.stop()
    assert files_holding([config.data_dir], value) == []


def test_the_vaults_bounds_come_from_the_config_and_answer_resource_exhausted(solo, tmp_path_factory):
    from solo import Overloaded
    from solo.config import load_config
    from solo.runtime.supervisor import ThreadedSolo

    config = load_config(None, data_dir=str(tmp_path_factory.mktemp("vault-bounds")), namespace="solo-vault-bounds",
                         gateway__port=0, gateway__metrics_port=-1, runtime__warm_pool_size=0,
                         vault__max_secret_bytes=1024, vault__max_secrets_per_tenant=3,
                         vault__max_versions_per_key=2, vault__max_tenant_bytes=2048)
    instance = ThreadedSolo(config).start()
    try:
        with SoloClient(instance.address, instance.operator_token) as operator:
            tokens = [operator.mint_token(t) for t in ("acme", "other")]
        with SoloClient(instance.address, tokens[0]) as acme, SoloClient(instance.address, tokens[1]) as other:
            with pytest.raises(InvalidRequest, match="max_secret_bytes"):
                acme.put_secret("big", b"x" * 1025)
            for version in range(1, 4):
                acme.put_secret("a", b"v%d" % version)
            assert [(s["key"], s["version"], s["versions"]) for s in acme.list_secrets()] == [("a", 3, 2)]
            acme.put_secret("b", b"x" * 1000)
            with pytest.raises(Overloaded, match="max_tenant_bytes"):
                acme.put_secret("c", b"x" * 1000)
            acme.put_secret("c", b"small")
            with pytest.raises(Overloaded, match="max_secrets_per_tenant"):
                acme.put_secret("d", b"v")
            other.put_secret("d", b"v")  # another tenant has its own bounds
            assert [s["key"] for s in other.list_secrets()] == ["d"]
    finally:
        instance.stop()


SLOW_START = source("""
    import time
    import solo

    class Quiet(solo.Service):
        def __init__(self):
            time.sleep(3)

        def ping(self):
            return "pong"
""")
LEAKY = source("""
    import solo

    class Leaky(solo.Service):
        def leak(self):
            return {k: self.context.secrets[k] for k in self.context.secrets}
""")


def swap_only(solo, client) -> SoloClient:
    token = attenuate(client.token, KeyRing(data_dir(solo) / "keys").public_key, rights=["swap", "invoke", "discover"])
    return SoloClient(solo.address, token)


def test_a_swap_checked_before_a_deploy_adds_a_secret_is_refused(solo, alice, name):
    """A token without secrets.read swaps while an admin's deploy --replace adding a secret waits for the service's
    lock: the swap was checked against no secrets, so the registry refuses it rather than run it with the key."""
    import threading
    import time

    from solo.errors import FailedPrecondition

    key, value = unique("race/"), plaintext()
    alice.put_secret(key, value)
    alice.deploy(READER, name)
    out: dict = {}

    def run(label, fn):
        try:
            out[label] = fn()
        except SoloError as exc:
            out[label] = exc

    with swap_only(solo, alice) as attacker:
        first = threading.Thread(target=run, args=("first", lambda: attacker.swap(name, SLOW_START, version="s1")))
        first.start()
        time.sleep(1.0)  # the first swap holds the service's lock while its new host starts (3 s)
        deploy = threading.Thread(target=run, args=("deploy", lambda: alice.deploy(
            SLOW_START, name, replace=True, secrets=[key], version="admin")))
        deploy.start()
        time.sleep(0.7)  # the deploy waits for the lock; the swap below is checked now (no secrets yet)
        second = threading.Thread(target=run, args=("second", lambda: attacker.swap(name, LEAKY, version="s2")))
        second.start()
        for thread in (first, deploy, second):
            thread.join(180)
        assert not isinstance(out["deploy"], SoloError), out
        if isinstance(out["second"], SoloError):
            assert isinstance(out["second"], FailedPrecondition), out
            assert "changed while your swap waited" in out["second"].message
        else:  # the box was slow enough that the swap ran before the deploy: the deploy replaced it
            assert alice.get(name)["version"] == "admin", out
        if alice.get(name)["version"] == "s2":
            assert attacker.call(name, "leak") == {}
    alice.stop(name, remove=True)


def test_a_rollback_needs_secrets_read_on_the_versions_keys(solo, alice, name):
    key = unique("roll/")
    alice.put_secret(key, b"v")
    alice.deploy(READER, name, secrets=[key], version="1")
    alice.swap(name, READER.replace("def keys(self)", "def keys2(self)"), version="2", watch_seconds=0)
    with swap_only(solo, alice) as attacker:
        with pytest.raises(PermissionDenied, match=key):
            attacker.rollback(name)
    with narrowed(solo, alice, [key]) as allowed:
        assert allowed.rollback(name)["service"]["version"] == "1"
    assert alice.call(name, "secret", key) == "v"
    alice.stop(name, remove=True)


def test_a_secret_quoted_by_a_failing_service_stays_out_of_its_status_events_and_files(solo, alice, name):
    """The service's own exception quotes its secret (and an env value): its host scrubs both from the failure
    text before it reaches the registry (status, events, checkpoint, WAL)."""
    key, value, env_value = unique("quoted/"), f"pw{uuid.uuid4().hex[:12]}", f"env{uuid.uuid4().hex[:12]}"
    alice.put_secret(key, value)
    fails = source(f"""
        import os
        import solo

        class Fails(solo.Service):
            def __init__(self):
                raise ValueError("bad " + self.context.secrets[{key!r}] + " and " + os.environ["TOKEN"])
    """)
    with pytest.raises(SoloError) as failed:
        alice.deploy(fails, name, secrets=[key], env={"TOKEN": env_value}, max_restarts=0)
    assert f"[secret {key}]" in str(failed.value) and value not in str(failed.value)
    assert env_value not in str(failed.value)
    status = str(alice.get(name))
    assert value not in status and env_value not in status
    events = str(alice.events(subject=name, limit=1000))
    assert value not in events and env_value not in events
    for text in (value, env_value):
        assert files_holding([data_dir(solo)], text.encode()) == []
    alice.stop(name, remove=True)
