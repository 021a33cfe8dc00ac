"""solo.config_reload: what a reload loads, what changed, what may change live, and `solo config show`'s TOML."""
from __future__ import annotations

import json
import tomllib

import pytest

from solo.config import SoloConfig, load_config
from solo.config_reload import (
    LIVE,
    RELOADED_FILE,
    ConfigSource,
    Reloaded,
    capped,
    diff,
    is_live,
    merge_live,
    read_reloaded,
    reloaded_events,
    tenant_keys,
    to_toml,
)
from solo.errors import FailedPrecondition, InvalidRequest, Overloaded


def test_the_flags_of_solo_up_still_win_after_a_reload(tmp_path):
    path = tmp_path / "solo.toml"
    path.write_text("[gateway]\nport = 8080\n[limits]\ntenant_rate_per_second = 50\n")
    source = ConfigSource.of(path, tmp_path, gateway__port=7171, gateway__host=None, data_dir="relative/or/None")
    assert source.overrides == {"gateway__port": 7171, "data_dir": str(tmp_path)}  # the one load_config resolved
    path.write_text("[gateway]\nport = 9090\n[limits]\ntenant_rate_per_second = 5\n")
    config = source.load()
    assert config.gateway.port == 7171 and config.limits.tenant_rate_per_second == 5
    assert ConfigSource.from_json(json.loads(json.dumps(source.to_json()))) == source


def test_without_config_the_data_dirs_solo_toml_is_read_when_it_appears(tmp_path):
    source = ConfigSource.of(None, tmp_path)
    assert source.file() == "" and source.load().limits.token_rate_per_second == 10_000
    (tmp_path / "solo.toml").write_text("[limits]\ntoken_rate_per_second = 7\n")
    assert source.file() == str(tmp_path / "solo.toml") and source.load().limits.token_rate_per_second == 7


def test_a_bad_file_names_the_key_and_the_problem(tmp_path):
    path = tmp_path / "solo.toml"
    source = ConfigSource.of(path, tmp_path)
    path.write_text("[limits]\ntenant_rate_per_second = -1\n")
    with pytest.raises(InvalidRequest) as err:
        source.load()
    assert "limits.tenant_rate_per_second" in err.value.message and "greater than or equal to 0" in err.value.message
    path.write_text("[limits\n")
    with pytest.raises(InvalidRequest, match="not valid TOML"):
        source.load()
    path.write_text("[limits]\ntenant_rat_per_second = 1\n")
    with pytest.raises(InvalidRequest, match="tenant_rat_per_second"):
        source.load()
    path.unlink()
    with pytest.raises(FailedPrecondition, match="no longer exists"):
        source.load()


def test_live_keys_are_applied_and_the_rest_needs_a_restart(tmp_path):
    old = load_config(data_dir=tmp_path)
    new = load_config(data_dir=tmp_path, gateway__port=9999, tls__enabled=True, gateway__processes=2,
                      limits__tenant_rate_per_second=5.0, quotas__tenants={"acme": {"max_services": 2}},
                      events__retention_days=3.0, runtime__tenant_egress={"acme": ["example.com:443"]},
                      runtime__max_restarts=9)
    change = diff(old, new)
    assert change.changed == ("events.retention_days", "limits.tenant_rate_per_second", "quotas.tenants.acme",
                              "runtime.tenant_egress.acme")
    assert change.needs_restart == ("gateway.port", "gateway.processes", "runtime.max_restarts", "tls.enabled")
    merged = merge_live(old, new)
    assert merged.limits.tenant_rate_per_second == 5 and merged.quotas.tenants["acme"].max_services == 2
    assert merged.events.retention_days == 3 and merged.runtime.tenant_egress == {"acme": ["example.com:443"]}
    assert (merged.gateway.port, merged.gateway.processes, merged.tls.enabled, merged.runtime.max_restarts) == \
        (old.gateway.port, 1, False, 3)  # left as they were
    assert diff(merged, new).changed == () and diff(merged, new).needs_restart == change.needs_restart
    assert diff(old, old).changed == diff(old, old).needs_restart == ()


def test_removing_a_table_entry_is_a_change(tmp_path):
    old = load_config(data_dir=tmp_path, limits__tenant_rates={"acme": {"rate_per_second": 2}})
    new = load_config(data_dir=tmp_path)
    assert diff(old, new).changed == ("limits.tenant_rates.acme",)
    assert merge_live(old, new).limits.tenant_rates == {}


def test_every_live_key_exists_and_ports_paths_and_processes_are_not_live():
    for key in LIVE:  # each names a section or a field of one (a typo would make nothing live)
        node = SoloConfig()
        for part in key.split("."):
            assert part in type(node).model_fields, key
            node = getattr(node, part)
    for key in ("gateway.port", "gateway.host", "data_dir", "namespace", "gateway.processes", "tls.enabled",
                "tls.dir", "gateway.metrics_token_file", "events.roll_seconds", "runtime.sandbox"):
        assert not is_live(key), key
    assert is_live("quotas.max_cpus") and is_live("runtime.tenant_egress.*") and not is_live("quotas_x")


def test_only_a_tenants_own_keys_are_its_own():
    keys = ("quotas.max_cpus", "quotas.tenants.acme", "limits.tenant_rates.acme", "limits.tenant_rates.bob",
            "runtime.tenant_egress.*", "events.tenant_retention_days.acme", "limits.tenant_token_rates.Not.A.Name")
    assert tenant_keys(keys) == {"acme": ["quotas.tenants.acme", "limits.tenant_rates.acme",
                                          "events.tenant_retention_days.acme"], "bob": ["limits.tenant_rates.bob"]}


def test_event_payloads_name_a_bounded_number_of_keys():
    assert capped(["a", "b"]) == {"keys": ["a", "b"]}
    big = capped([f"k{i}" for i in range(250)])
    assert len(big["keys"]) == 100 and big["more"] == 150


def test_the_toml_reads_back_to_the_same_config(tmp_path):
    config = load_config(data_dir=tmp_path, gateway__metrics_token_file=str(tmp_path / "metrics.token"),
                         limits__tenant_rates={"acme": {"rate_per_second": 2.5, "burst": 3}},
                         quotas__tenants={"acme": {"max_services": 2}, "bob": {"max_cpus": 1.5}},
                         runtime__tenant_egress={"*": ["example.com:443"], "acme": ["10.0.0.1:5432"]},
                         events__tenant_retention_days={"acme": 365}, namespace='odd "name"\n')
    (tmp_path / "metrics.token").write_text("s3cret-metrics-token")
    text = to_toml(config)
    assert "s3cret" not in text and str(tmp_path / "metrics.token") in text  # the path, never the content
    assert SoloConfig.model_validate(tomllib.loads(text)) == config


def test_secret_sounding_values_are_hidden():
    from solo.config_reload import redacted
    assert redacted({"vault": {"master_key": "abc", "master_key_file": "/k", "max_secret_bytes": 5},
                     "x": {"api_token": "t", "password": "", "key_cutoff_days": 7}}) == \
        {"vault": {"master_key": "(hidden)", "master_key_file": "/k", "max_secret_bytes": 5},
         "x": {"api_token": "(hidden)", "password": "", "key_cutoff_days": 7}}


def test_the_reloaded_file_round_trips_and_a_bad_one_is_ignored(tmp_path):
    config = load_config(data_dir=tmp_path, events__retention_days=2.0)
    path = tmp_path / RELOADED_FILE
    assert read_reloaded(path) is None
    path.write_text(Reloaded(config, 3, 1234.5, "/etc/solo.toml").to_json())
    found = read_reloaded(path)
    assert (found.config, found.version, found.loaded_at, found.path) == (config, 3, 1234.5, "/etc/solo.toml")
    assert reloaded_events(path).retention_days == 2.0
    path.write_text("{not json")
    assert read_reloaded(path) is None and reloaded_events(path) is None


def test_a_reload_waits_for_every_gateway_process_to_apply_it(tmp_path, caplog):
    import asyncio
    import os

    from solo.gateway.group import GroupFile, Member

    group = GroupFile.create(tmp_path)
    me, peer = Member(group, 0, 2, "t"), Member(GroupFile(tmp_path / "gateway-group"), 1, 2, "t")
    me.publish_config(4)
    peer.publish_config(3)
    assert group.slot(1).pid == os.getpid() and group.slot(1).config_version == 3
    assert group.slot(0).route_version == 0  # the route version is its own field

    async def later():
        await asyncio.sleep(0.2)
        peer.publish_config(4)

    async def both():
        waiting = asyncio.create_task(me.wait_config(4, timeout=30))
        await later()
        await asyncio.wait_for(waiting, 30)
        assert group.slot(1).config_version == 4
        await me.wait_config(5, timeout=0.1)  # a process that does not apply it in time is logged, not waited for

    asyncio.run(both())
    assert "did not apply config version 5" in caplog.text


def test_new_rates_apply_from_the_next_call_and_a_lowered_burst_caps_the_bucket():
    from solo.security.ratelimit import Rate, RateLimiter

    now = [0.0]
    limiter = RateLimiter(Rate(0, 0), clock=lambda: now[0], tenant_default=Rate(100, 100))
    for _ in range(10):
        limiter.take("acme", "root")  # a bucket of 100, 90 left
    limiter.set_rates(RateLimiter(Rate(0, 0), tenant_default=Rate(100, 100), tenant_rates={"acme": Rate(1, 2)}))
    limiter.take("acme", "root")
    limiter.take("acme", "root")  # the bucket holds at most the new burst: 2
    with pytest.raises(Overloaded, match="1 calls/s"):
        limiter.take("acme", "root")
    limiter.take("other", "root2")  # others keep the default
    now[0] += 1.0
    limiter.take("acme", "root")  # refilled at the new rate


def test_a_changed_call_quota_applies_to_tenants_already_seen():
    from solo.gateway.admission import Admission

    admission = Admission(lambda tenant: 1)
    first = admission.admit("acme", "acme/kv")
    with first, pytest.raises(Overloaded, match="max_concurrent_calls"):
        admission.admit("acme", "acme/kv")
    admission.set_limit_for(lambda tenant: 2)
    with admission.admit("acme", "acme/kv"), admission.admit("acme", "acme/kv"):
        with pytest.raises(Overloaded, match="may have 2"):
            admission.admit("acme", "acme/kv")
