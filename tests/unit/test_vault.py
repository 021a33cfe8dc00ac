"""The vault's envelope encryption and its store (solo/security/vault.py), on real files in a temporary directory."""
from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from solo.errors import FailedPrecondition, InvalidRequest, NotFound, Overloaded
from solo.security.vault import Vault, VaultCorrupt, VaultLimits, key_id, open_value, seal_value, write_durably

PLAIN = b"hunter2-the-plaintext-\x00\xff"


def vault_files(directory) -> dict:
    return {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_put_get_versions_list_delete(tmp_path):
    clock = iter(range(100, 200))
    vault = Vault(tmp_path / "vault", clock=lambda: float(next(clock)))
    assert vault.put("alice", "db/password", b"one").version == 1
    assert vault.put("alice", "db/password", b"two").version == 2
    assert vault.put("alice", "api/key", b"k").version == 1
    assert vault.get("alice", "db/password").value == b"two"
    assert vault.get("alice", "db/password", 1).value == b"one"
    assert [(s.key, s.version, s.versions) for s in vault.list("alice")] == [("api/key", 1, 1), ("db/password", 2, 2)]
    assert [s.key for s in vault.list("alice", "db/")] == ["db/password"]
    assert vault.delete("alice", "db/password") == 2
    with pytest.raises(NotFound):
        vault.get("alice", "db/password")
    assert vault.put("alice", "db/password", b"again").version == 1  # a removed key starts again


def test_a_new_vault_survives_reopening_and_its_files_are_private(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "db/password", PLAIN)
    again = Vault(tmp_path / "vault")
    assert again.get("alice", "db/password").value == PLAIN
    assert again.active == vault.active
    for path in (tmp_path / "vault").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_no_plaintext_on_disk(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "db/password", PLAIN)
    vault.put("alice", "db/password", b"second-plaintext-value")
    vault.rotate()
    for path, data in vault_files(tmp_path).items():
        for secret in (PLAIN, b"second-plaintext-value", PLAIN[:12]):
            assert secret not in data, path
            assert base64.b64encode(secret) not in data, path


def test_tenants_are_separate_and_another_tenants_key_is_not_found(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "db/password", PLAIN)
    with pytest.raises(NotFound) as missing:
        vault.get("bob", "db/never-put")
    for call in (lambda: vault.get("bob", "db/password"), lambda: vault.delete("bob", "db/password"),
                 lambda: vault.versions("bob", "db/password")):
        with pytest.raises(NotFound) as refused:
            call()
        assert str(refused.value).replace("db/password", "K") == str(missing.value).replace("db/never-put", "K")
    assert vault.list("bob") == []
    assert vault.put("bob", "db/password", b"bob's").version == 1  # bob's own key, not a version of alice's
    assert vault.get("alice", "db/password").value == PLAIN


def test_a_ciphertext_moved_to_another_tenant_key_or_version_does_not_decrypt(tmp_path):
    masters = {"k1": os.urandom(32)}
    record = seal_value(masters, "k1", "alice", "db/password", 1, PLAIN)
    assert open_value(masters, record, "alice", "db/password", 1) == PLAIN
    for tenant, key, version in (("bob", "db/password", 1), ("alice", "db/other", 1), ("alice", "db/password", 2)):
        with pytest.raises(VaultCorrupt):
            open_value(masters, record, tenant, key, version)


def test_moving_a_record_between_tenant_files_is_detected(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "db/password", PLAIN)
    vault.put("bob", "db/password", b"bob's")
    alice = json.loads((tmp_path / "vault/tenants/alice.json").read_text())
    bob_path = tmp_path / "vault/tenants/bob.json"
    bob = json.loads(bob_path.read_text())
    bob["keys"]["db/password"] = alice["keys"]["db/password"]
    bob_path.write_text(json.dumps(bob))
    with pytest.raises(FailedPrecondition, match="cannot be decrypted"):
        Vault(tmp_path / "vault").get("bob", "db/password")


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped"])
def test_tampering_is_detected(tmp_path, field):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "db/password", PLAIN)
    path = tmp_path / "vault/tenants/alice.json"
    data = json.loads(path.read_text())
    record = data["keys"]["db/password"]["versions"][0]
    raw = bytearray(base64.b64decode(record[field]))
    raw[-1] ^= 1
    record[field] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(data))
    with pytest.raises(FailedPrecondition, match="cannot be decrypted"):
        Vault(tmp_path / "vault").get("alice", "db/password")


def test_each_version_has_its_own_data_key_and_nonce(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "a", PLAIN)
    vault.put("alice", "a", PLAIN)
    versions = json.loads((tmp_path / "vault/tenants/alice.json").read_text())["keys"]["a"]["versions"]
    assert versions[0]["ciphertext"] != versions[1]["ciphertext"]
    assert versions[0]["wrapped"] != versions[1]["wrapped"]


def test_rotation_rewraps_every_data_key_and_retires_the_old_key(tmp_path):
    vault = Vault(tmp_path / "vault")
    for tenant in ("alice", "bob"):
        vault.put(tenant, "db/password", tenant.encode())
        vault.put(tenant, "db/password", tenant.encode() * 2)
    old = vault.active
    new, rewrapped = vault.rotate()
    assert new != old and rewrapped == 4
    assert sorted(p.name for p in (tmp_path / "vault").glob("master-*.key")) == [f"master-{new}.key"]
    ciphertexts = json.loads((tmp_path / "vault/tenants/bob.json").read_text())["keys"]["db/password"]["versions"]
    assert {r["kid"] for r in ciphertexts} == {new}
    reopened = Vault(tmp_path / "vault")
    assert reopened.active == new
    assert reopened.get("bob", "db/password", 1).value == b"bob"
    assert reopened.get("alice", "db/password").value == b"alicealice"


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, the in-memory vault is dropped."""


def crashing_writer(after: int):
    writes = []

    def write(path, data):
        if len(writes) >= after:
            raise Crash(f"crashed before writing {path.name}")
        writes.append(path.name)
        write_durably(path, data)
    return write, writes


@pytest.mark.parametrize("after", [*range(0, 5), "retire"])
def test_a_rotation_interrupted_at_any_step_loses_nothing(tmp_path, after):
    """A rotation over three tenants writes the new key, `active`, then three tenant files, then deletes the
    old key: cut before each of them."""
    vault = Vault(tmp_path / "vault")
    for tenant in ("alice", "bob", "carol"):
        vault.put(tenant, "db/password", tenant.encode())
    old = vault.active
    if after == "retire":
        writes, after = [], 5
        vault.keys.retire = lambda keep: (_ for _ in ()).throw(Crash("crashed before deleting the old key"))
    else:
        write, writes = crashing_writer(after)
        vault.write = vault.keys.write = write
    with pytest.raises(Crash):
        vault.rotate()
    reopened = Vault(tmp_path / "vault")  # opening finishes (or undoes) the rotation
    for tenant in ("alice", "bob", "carol"):
        assert reopened.get(tenant, "db/password").value == tenant.encode()
    keys = sorted(p.name for p in (tmp_path / "vault").glob("master-*.key"))
    assert keys == [f"master-{reopened.active}.key"]
    assert (reopened.active == old) == (after < 2), writes  # active once `active` was written
    assert not list((tmp_path / "vault").rglob("*.tmp"))
    reopened.rotate()
    assert Vault(tmp_path / "vault").get("carol", "db/password").value == b"carol"


def test_master_key_file_off_the_data_directory(tmp_path):
    keyfile = tmp_path / "mounted" / "master.key"
    keyfile.parent.mkdir()
    with pytest.raises(FailedPrecondition, match="does not exist"):
        Vault(tmp_path / "vault", master_key_file=keyfile)
    raw = os.urandom(32)
    keyfile.write_text(base64.b64encode(raw).decode() + "\n")
    vault = Vault(tmp_path / "vault", master_key_file=keyfile)
    assert vault.active == key_id(raw)
    vault.put("alice", "db/password", PLAIN)
    assert not list((tmp_path / "vault").glob("master-*"))  # no key on the data disk
    write, _ = crashing_writer(1)  # the old key kept as .retiring, then the crash before the new one lands
    vault.write = vault.keys.write = write
    with pytest.raises(Crash):
        vault.rotate()
    reopened = Vault(tmp_path / "vault", master_key_file=keyfile)
    assert reopened.get("alice", "db/password").value == PLAIN
    assert not keyfile.with_name("master.key.retiring").exists()
    new, rewrapped = reopened.rotate()
    assert rewrapped == 1 and new != key_id(raw) and key_id(base64.b64decode(keyfile.read_text())) == new
    assert Vault(tmp_path / "vault", master_key_file=keyfile).get("alice", "db/password").value == PLAIN


def test_a_lost_master_key_is_said_not_replaced(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "a", PLAIN)
    (tmp_path / "vault" / f"master-{vault.active}.key").unlink()
    with pytest.raises(FailedPrecondition, match="restore it from your backup"):
        Vault(tmp_path / "vault")


@pytest.mark.parametrize("key", ["", "a b", "x" * 128, "db/*", "ключ", "a\nb", None])
def test_bad_keys_are_invalid(tmp_path, key):
    vault = Vault(tmp_path / "vault")
    with pytest.raises(InvalidRequest, match="invalid secret key"):
        vault.put("alice", key, b"v")
    with pytest.raises(InvalidRequest):
        vault.get("alice", key)


def test_bounds(tmp_path):
    vault = Vault(tmp_path / "vault", VaultLimits(max_secret_bytes=100, max_secrets_per_tenant=3,
                                                  max_versions_per_key=2, max_tenant_bytes=250))
    with pytest.raises(InvalidRequest, match="max_secret_bytes"):
        vault.put("alice", "big", b"x" * 101)
    for i in range(1, 5):
        vault.put("alice", "a", b"v%d" % i)
    assert vault.versions("alice", "a") == [3, 4]  # the oldest versions go
    with pytest.raises(NotFound, match="versions kept are 3, 4"):
        vault.get("alice", "a", 1)
    vault.put("alice", "b", b"x" * 100)
    with pytest.raises(Overloaded, match="max_tenant_bytes"):
        vault.put("alice", "c", b"x" * 100)
    vault.put("alice", "c", b"small")
    with pytest.raises(Overloaded, match="max_secrets_per_tenant"):
        vault.put("alice", "d", b"v")
    vault.put("bob", "d", b"v")  # bounds are per tenant
    assert vault.get("alice", "c").value == b"small"


def test_an_offline_rotation_of_a_mounted_key_is_finished_at_open(tmp_path):
    """A read-only master_key_file (a Kubernetes Secret) is rotated by its owner: the new key in the file, the old
    one beside it as <file>.retiring; the vault re-wraps everything when it opens."""
    mount = tmp_path / "mounted"
    mount.mkdir()
    old, new = os.urandom(32), os.urandom(32)
    keyfile = mount / "master.key"
    keyfile.write_text(base64.b64encode(old).decode())
    Vault(tmp_path / "vault", master_key_file=keyfile).put("alice", "db/password", PLAIN)
    keyfile.write_text(base64.b64encode(new).decode())
    keyfile.with_name("master.key.retiring").write_text(base64.b64encode(old).decode())
    vault = Vault(tmp_path / "vault", master_key_file=keyfile)
    assert vault.active == key_id(new)
    record = json.loads((tmp_path / "vault/tenants/alice.json").read_text())["keys"]["db/password"]["versions"][0]
    assert record["kid"] == key_id(new)
    keyfile.with_name("master.key.retiring").unlink(missing_ok=True)  # the owner takes the old key out of the Secret
    assert Vault(tmp_path / "vault", master_key_file=keyfile).get("alice", "db/password").value == PLAIN


KILLED_ROTATION = """
import os, sys
from pathlib import Path
from solo.security.vault import Vault, write_durably
writes = []
def write(path, data):
    if len(writes) == int(sys.argv[2]):
        os.kill(os.getpid(), 9)  # the process dies here, as a power cut or OOM kill would end it
    writes.append(path)
    write_durably(path, data)
vault = Vault(Path(sys.argv[1]))
vault.write = vault.keys.write = write
vault.rotate()
"""


@pytest.mark.parametrize("after", [1, 3])
def test_a_rotation_killed_with_sigkill_loses_nothing(tmp_path, after):
    import subprocess
    import sys
    vault = Vault(tmp_path / "vault")
    for tenant in ("alice", "bob", "carol"):
        vault.put(tenant, "db/password", tenant.encode() + PLAIN)
    killed = subprocess.run([sys.executable, "-c", KILLED_ROTATION, str(tmp_path / "vault"), str(after)],
                            capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    reopened = Vault(tmp_path / "vault")
    for tenant in ("alice", "bob", "carol"):
        assert reopened.get(tenant, "db/password").value == tenant.encode() + PLAIN
    assert len(list((tmp_path / "vault").glob("master-*.key"))) == 1


def test_only_recently_used_tenants_stay_in_memory(tmp_path):
    from solo.security.vault import CACHED_TENANTS
    vault = Vault(tmp_path / "vault")
    tenants = [f"t{i}" for i in range(CACHED_TENANTS + 8)]
    for tenant in tenants:
        vault.put(tenant, "k", tenant.encode())
    assert len(vault._cache) == CACHED_TENANTS
    assert all(vault.get(t, "k").value == t.encode() for t in tenants)  # read back from their files


def test_the_gate_runs_tenants_side_by_side_and_a_rotation_alone():
    import asyncio

    from solo.registry.vault import VaultGate

    async def scenario():
        gate, log = VaultGate(), []

        async def op(tenant, name, hold):
            async with gate.tenant(tenant):
                log.append(f"{name} in")
                await hold.wait()
                log.append(f"{name} out")

        async def rotate():
            async with gate.alone():
                log.append("rotate")

        a_done, b_done = asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(op("alice", "a", a_done))
        b = asyncio.create_task(op("bob", "b", b_done))
        await asyncio.sleep(0.01)
        assert log == ["a in", "b in"]  # two tenants at once
        a2_done = asyncio.Event()
        a2 = asyncio.create_task(op("alice", "a2", a2_done))
        r = asyncio.create_task(rotate())
        await asyncio.sleep(0.01)
        assert "a2 in" not in log and "rotate" not in log  # alice's second waits for her first; rotate for both
        late = asyncio.create_task(op("carol", "c", asyncio.Event()))
        a_done.set()
        b_done.set()
        await asyncio.sleep(0.01)
        assert log[-1] == "a2 in" and "rotate" not in log  # started before the rotation asked: it finishes first
        a2_done.set()
        await asyncio.wait_for(r, 5)
        await asyncio.sleep(0.01)
        assert log.index("rotate") > log.index("a2 out") and log.index("c in") > log.index("rotate")
        for task in (a, b, a2, late):
            task.cancel()
        await asyncio.gather(a, b, a2, late, return_exceptions=True)
    asyncio.run(scenario())


def test_the_data_directory_key_moves_to_a_master_key_file(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "db/password", PLAIN)
    keyfile = tmp_path / "elsewhere.key"
    (tmp_path / "vault" / f"master-{vault.active}.key").rename(keyfile)  # the documented move
    (tmp_path / "vault" / "active").unlink()
    moved = Vault(tmp_path / "vault", master_key_file=keyfile)
    assert moved.active == vault.active and moved.get("alice", "db/password").value == PLAIN
    assert not list((tmp_path / "vault").glob("master-*"))


def test_a_service_sees_a_read_only_mapping_whose_repr_holds_no_value():
    from solo.api import context_from

    context = context_from("alice", "app", "1", "", {}, {"db/password": PLAIN[:8], "bin": b"\xff\x00"})
    assert context.secrets["db/password"] == PLAIN[:8].decode()
    assert context.secrets.raw("bin") == b"\xff\x00"
    assert sorted(context.secrets) == ["bin", "db/password"] and len(context.secrets) == 2
    with pytest.raises(TypeError):
        context.secrets["db/password"] = "changed"
    for shown in (repr(context), str(context), repr(context.secrets)):
        assert PLAIN[:8].decode() not in shown
    assert "db/password" in repr(context.secrets)
    assert context_from("alice", "app", "1", "", {}).secrets == {}


def test_a_specs_secrets_are_checked_and_leave_older_fingerprints_alone():
    import dataclasses
    import hashlib

    from solo.config import LimitsConfig
    from solo.core.spec import MAX_SERVICE_SECRETS, ServiceSpec, validate_spec

    plain = ServiceSpec(name="app", source="class A:\n    def f(self): pass\n")
    before_the_vault = {k: v for k, v in dataclasses.asdict(plain).items() if k not in ("secrets", "allow_egress")}
    assert plain.fingerprint() == hashlib.sha256(json.dumps(before_the_vault, sort_keys=True).encode()).hexdigest()
    checked = validate_spec(ServiceSpec(name="app", source=plain.source, secrets=("b/x", "a", "b/x")), LimitsConfig())
    assert checked.secrets == ("a", "b/x") and checked.fingerprint() != validate_spec(plain, LimitsConfig()).fingerprint()
    for bad in (("db/*",), ("",), tuple(f"k{i}" for i in range(MAX_SERVICE_SECRETS + 1))):
        with pytest.raises(InvalidRequest):
            validate_spec(ServiceSpec(name="app", source=plain.source, secrets=bad), LimitsConfig())


def test_secrets_sealed_to_one_host_open_only_there():
    from types import SimpleNamespace

    from solo.errors import Unavailable
    from solo.runtime.host import ServiceHost
    from solo.security import seal
    from solo.security.vault import SEAL_PURPOSE

    host, other = SimpleNamespace(_secrets_key=seal.new_key()), SimpleNamespace(_secrets_key=seal.new_key())
    values = {"db/password": base64.b64encode(PLAIN).decode()}
    sealed = seal.seal(seal.public_text(host._secrets_key), json.dumps(values), SEAL_PURPOSE)
    assert PLAIN not in sealed.encode() and base64.b64encode(PLAIN) not in sealed.encode()
    assert ServiceHost._open_secrets(host, sealed) == values
    assert ServiceHost._open_secrets(host, "") == {}
    with pytest.raises(Unavailable, match="sealed for another host") as refused:
        ServiceHost._open_secrets(other, sealed)
    assert values["db/password"] not in str(refused.value)
    wrong_use = seal.seal(seal.public_text(host._secrets_key), json.dumps(values), "host key")
    with pytest.raises(Unavailable):
        ServiceHost._open_secrets(host, wrong_use)  # sealed for another purpose


def test_a_tokens_secret_patterns_list_exactly_what_the_policy_allows(tmp_path):
    """ListSecrets filters keys with the token's patterns read once (no Datalog run per key); the answer is the
    policy's for every key, including exact keys beside longer ones and two attenuations one after another."""
    import time

    from solo.errors import PermissionDenied
    from solo.security.capabilities import Request, attenuate, authorize, mint, parse, secret_allowed, secret_patterns
    from solo.security.keys import KeyRing

    keys = KeyRing(tmp_path / "keys")
    key_id, private = keys.private_key()
    full = mint(private, key_id, "acme", ["secrets.read", "secrets.write", "deploy"], 3600).token
    once = attenuate(full, keys.public_key, secrets=["db/password", "api/*"])
    twice = attenuate(once, keys.public_key, secrets=["api/x*", "db/*"], rights=["secrets.read"])
    names = ["db/password", "db/password2", "db/passwor", "db/other", "api/", "api/x", "api/xy", "api/y", "apix",
             "other", "db/password/x"]
    assert secret_patterns(full) == []
    for token in (full, once, twice):
        checks, parsed = secret_patterns(token), parse(token, keys.public_key)
        for name in names:
            try:
                authorize(parsed, Request("secrets.read", secret=name), time.time())
                allowed = True
            except PermissionDenied:
                allowed = False
            assert secret_allowed(checks, name) == allowed, (name, token is once)
    assert not secret_allowed(secret_patterns(once), "db/password2")


@pytest.mark.parametrize("damage", ['{"format": 1, "tenant": "bob"}', '{"format": 1, "tenant": "bob", "keys": []}',
                                    '{"format": 1, "tenant": "bob", "keys": {"a": {"next": 2}}}',
                                    '{"format": 1, "tenant": "bob", "keys": {"a": {"next": 2, "created_at": 1, '
                                    '"versions": [{"version": 1}]}}}', "not json"])
def test_a_damaged_tenant_file_stops_only_that_tenant_and_a_rotation_keeps_the_old_key(tmp_path, damage):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "db/password", PLAIN)
    vault.put("bob", "k", b"bob's")
    (tmp_path / "vault" / "tenants" / "bob.json").write_text(damage)
    vault = Vault(tmp_path / "vault")
    with pytest.raises(FailedPrecondition, match="bob.json"):
        vault.get("bob", "k")
    with pytest.raises(FailedPrecondition, match="bob.json"):
        vault.list("bob")
    old = vault.active
    new, rewrapped = vault.rotate()  # alice's key is re-wrapped; bob's file is skipped, the old key kept
    assert rewrapped == 1 and vault.skipped == ["bob"] and old in vault.masters
    reopened = Vault(tmp_path / "vault")  # the open finishes what it can and never fails for bob's file
    assert reopened.get("alice", "db/password").value == PLAIN and reopened.active == new
    with pytest.raises(FailedPrecondition, match="bob"):
        reopened.rotate()  # not over a key bob's file may still need
    (tmp_path / "vault" / "tenants" / "bob.json").unlink()  # the operator restores (here: removes) it
    assert Vault(tmp_path / "vault").rotate()[1] == 1


def test_a_missing_master_key_beside_tenant_files_is_refused_not_replaced(tmp_path):
    vault = Vault(tmp_path / "vault")
    vault.put("alice", "a", PLAIN)
    (tmp_path / "vault" / f"master-{vault.active}.key").unlink()
    (tmp_path / "vault" / "active").unlink()
    with pytest.raises(FailedPrecondition, match="master_key_file"):
        Vault(tmp_path / "vault")
    assert not list((tmp_path / "vault").glob("master-*.key"))


def test_a_stale_temporary_file_or_link_is_never_written_through(tmp_path):
    target = tmp_path / "vault" / "master-x.key"
    target.parent.mkdir()
    stale = target.with_name(target.name + ".tmp")
    stale.write_text("old")
    os.chmod(stale, 0o666)  # a wider mode would be kept by an O_TRUNC open of it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    write_durably(target, "key bytes")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "key bytes"
    stale.symlink_to(elsewhere)  # a link planted under the temporary name is not followed
    write_durably(target, "new key")
    assert elsewhere.read_text() == "untouched" and target.read_text() == "new key"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and not target.is_symlink()


def test_a_tenants_file_rewrites_are_bounded_by_write_bytes_per_second(tmp_path):
    """Each put and delete rewrites (and fsyncs) the tenant's whole file: its bytes are charged to the tenant's
    budget; past it the tenant is refused for a while and another tenant is not."""
    now = [1000.0]
    vault = Vault(tmp_path / "vault", VaultLimits(max_secret_bytes=64 * 1024, write_bytes_per_second=100_000),
                  clock=lambda: now[0])
    big = b"x" * 60_000
    vault.put("alice", "a", big)  # ~80 KB of JSON: within the second's budget
    vault.put("alice", "b", big)  # ~160 KB: allowed (the budget was not in debt), leaves it in debt
    with pytest.raises(Overloaded, match="write_bytes_per_second"):
        vault.put("alice", "c", b"small")
    with pytest.raises(Overloaded, match="write_bytes_per_second"):
        vault.delete("alice", "a")
    vault.put("bob", "a", big)  # another tenant has its own budget
    now[0] += 3.0  # the debt is paid back at the rate
    assert vault.put("alice", "c", b"small").version == 1
    assert [s.key for s in vault.list("alice")] == ["a", "b", "c"]
