"""solo.config: defaults < TOML file < overrides; unknown keys are errors."""
from __future__ import annotations

import pytest

from solo.config import SoloConfig, load_config
from solo.errors import InvalidRequest


def test_defaults_when_there_is_no_file(tmp_path):
    config = load_config(data_dir=tmp_path)
    assert config.gateway.port == 7070 and config.gateway.host == "127.0.0.1"
    assert config.limits.max_source_bytes == 1024 * 1024 and config.limits.max_concurrency == 1000
    assert config.runtime.max_restarts == 3 and config.runtime.default_num_cpus == 0.0
    assert config.namespace == "solo"
    assert config.data_dir == tmp_path.resolve()


def test_solo_toml_in_the_data_dir_is_read(tmp_path):
    (tmp_path / "solo.toml").write_text('namespace = "prod"\n[gateway]\nport = 8080\n[runtime]\nmax_restarts = 7\n')
    config = load_config(data_dir=tmp_path)
    assert (config.namespace, config.gateway.port, config.runtime.max_restarts) == ("prod", 8080, 7)
    assert config.gateway.host == "127.0.0.1"  # untouched keys keep their defaults


def test_explicit_config_path_is_read(tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text("[limits]\nmax_cpus = 8\n")
    assert load_config(path, data_dir=tmp_path / "data").limits.max_cpus == 8


def test_overrides_win_over_the_file(tmp_path):
    (tmp_path / "solo.toml").write_text("[gateway]\nport = 8080\nmetrics_port = 9090\n")
    config = load_config(data_dir=tmp_path, gateway__port=7071, runtime__warm_pool_size=0, namespace=None)
    assert config.gateway.port == 7071 and config.gateway.metrics_port == 9090
    assert config.runtime.warm_pool_size == 0
    assert config.namespace == "solo"  # None overrides are ignored


def test_data_dir_override_is_expanded_and_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "d").mkdir()
    assert load_config(data_dir="~/d/../d").data_dir == (tmp_path / "d").resolve()


@pytest.mark.parametrize("toml,word", [("[gateway]\nprot = 1\n", "prot"), ("[gatway]\nport = 1\n", "gatway"),
                                       ("colour = 'red'\n", "colour")])
def test_unknown_keys_in_the_file_are_rejected_naming_them(tmp_path, toml, word):
    (tmp_path / "solo.toml").write_text(toml)
    with pytest.raises(InvalidRequest) as err:
        load_config(data_dir=tmp_path)
    assert word in err.value.message and "Extra inputs are not permitted" in err.value.message
    assert str(tmp_path / "solo.toml") in err.value.message


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(InvalidRequest, match="prot"):
        load_config(data_dir=tmp_path, gateway__prot=1)


def test_out_of_range_values_are_rejected(tmp_path):
    with pytest.raises(InvalidRequest, match="gateway.port"):
        load_config(data_dir=tmp_path, gateway__port=70000)


def test_invalid_toml_is_rejected_naming_the_file(tmp_path):
    (tmp_path / "solo.toml").write_text("[gateway\nport = \n")
    with pytest.raises(InvalidRequest) as err:
        load_config(data_dir=tmp_path)
    assert "is not valid TOML" in err.value.message and str(tmp_path / "solo.toml") in err.value.message


def test_missing_explicit_config_path_is_rejected(tmp_path):
    with pytest.raises(InvalidRequest, match="does not exist"):
        load_config(tmp_path / "nope.toml", data_dir=tmp_path)


def test_config_survives_a_dict_round_trip(tmp_path):
    """The registry actor receives the config as a dict (model_dump) and validates it again."""
    config = load_config(data_dir=tmp_path, gateway__port=7999)
    assert SoloConfig.model_validate(config.model_dump()) == config


def test_per_tenant_retention_is_a_table_of_non_negative_days(tmp_path):
    from solo.config import load_config

    path = tmp_path / "solo.toml"
    path.write_text("[events.tenant_retention_days]\nacme = 365\nnoisy = 0.5\n")
    assert load_config(path).events.tenant_retention_days == {"acme": 365, "noisy": 0.5}
    path.write_text("[events.tenant_retention_days]\nacme = -1\n")
    with pytest.raises(Exception, match="tenant_retention_days"):
        load_config(path)
