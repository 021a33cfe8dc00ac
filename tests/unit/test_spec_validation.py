"""solo.core.spec: what a deploy may ask for, and how it is normalised."""
from __future__ import annotations

import dataclasses
import math

import pytest

from solo.config import LimitsConfig
from solo.core.spec import Resources, ServiceSpec, check_source, validate_name, validate_resources, validate_spec
from solo.errors import InvalidRequest

SOURCE = "class Echo:\n    def echo(self, x):\n        return x\n"
LIMITS = LimitsConfig()


def spec(**changes) -> ServiceSpec:
    return dataclasses.replace(ServiceSpec(name="echo", source=SOURCE, filename="echo.py"), **changes)


# -- normalisation ---------------------------------------------------------------------------------

def test_valid_spec_normalises_filename_to_its_basename():
    assert validate_spec(spec(filename="/home/ann/services/echo.py"), LIMITS).filename == "echo.py"
    assert validate_spec(spec(filename="C:\\Users\\ann\\echo.py"), LIMITS).filename == "echo.py"


def test_missing_filename_defaults_to_the_service_name():
    assert validate_spec(spec(filename=""), LIMITS).filename == "echo.py"


def test_num_cpus_defaults_when_the_spec_asks_for_none():
    assert validate_spec(spec(), LIMITS, default_num_cpus=0.5).resources.num_cpus == 0.5
    explicit = validate_spec(spec(resources=Resources(num_cpus=2)), LIMITS, default_num_cpus=0.5)
    assert explicit.resources.num_cpus == 2.0


def test_max_concurrency_zero_becomes_one():
    assert validate_spec(spec(max_concurrency=0), LIMITS).max_concurrency == 1
    assert validate_spec(spec(max_concurrency=8), LIMITS).max_concurrency == 8


def test_valid_spec_keeps_everything_else():
    original = spec(version="1.2.0", class_name="Echo", env={"MY_VAR": "x"}, labels={"app.io/team": "core"},
                    config_json='{"greeting": "hi"}', max_restarts=5)
    validated = validate_spec(original, LIMITS)
    assert (validated.version, validated.class_name, validated.env, validated.labels, validated.config_json,
            validated.max_restarts) == ("1.2.0", "Echo", {"MY_VAR": "x"}, {"app.io/team": "core"},
                                        '{"greeting": "hi"}', 5)


# -- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "echo", "kv-store", "svc2", "a" * 63])
def test_valid_names_are_accepted(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["Echo", "ECHO", "1echo", "-echo", "a" * 64, "", "a/b", "../etc", "a.b",
                                  "a_b", "a b", "échо", None])
def test_invalid_names_are_rejected_with_the_rule(name):
    with pytest.raises(InvalidRequest, match="lowercase letters, digits and '-'"):
        validate_name(name)


def test_invalid_name_message_names_what_was_checked():
    with pytest.raises(InvalidRequest, match="invalid tenant name 'Acme'"):
        validate_name("Acme", "tenant name")


# Guards: '$' also matches before a trailing newline; names must match in full.
def test_name_with_trailing_newline_is_rejected():
    with pytest.raises(InvalidRequest):
        validate_name("counter\n")


@pytest.mark.parametrize("changes", [
    {"version": "1.0\n"}, {"env": {"MY_VAR\n": "x"}}, {"labels": {"team\n": "x"}},
    {"resources": Resources(custom={"tpu\n": 1})},
])
def test_other_keys_with_a_trailing_newline_are_rejected(changes):
    with pytest.raises(InvalidRequest, match="invalid"):
        validate_spec(spec(**changes), LIMITS)


def test_invalid_name_in_spec_is_rejected():
    with pytest.raises(InvalidRequest, match="invalid service name 'Echo'"):
        validate_spec(spec(name="Echo"), LIMITS)


@pytest.mark.parametrize("version", ["-1", "1 2", "a" * 65, "v/1"])
def test_invalid_versions_are_rejected(version):
    with pytest.raises(InvalidRequest, match="invalid version"):
        validate_spec(spec(version=version), LIMITS)


def test_class_name_must_be_an_identifier():
    with pytest.raises(InvalidRequest, match="Python identifier"):
        validate_spec(spec(class_name="my-class"), LIMITS)


# -- source ---------------------------------------------------------------------------------------

def test_syntax_error_names_the_file_and_line():
    source = "class Echo:\n    def echo(self):\n        return (\n\n"
    with pytest.raises(InvalidRequest) as err:
        check_source("import os\n\ndef broken(:\n    pass\n", "broken.py", 10_000)
    assert "syntax error in broken.py, line 3" in err.value.message
    with pytest.raises(InvalidRequest, match=r"echo\.py, line \d"):
        validate_spec(spec(source=source, filename="/x/echo.py"), LIMITS)


@pytest.mark.parametrize("source", ["", "   \n\t\n"])
def test_empty_source_is_rejected(source):
    with pytest.raises(InvalidRequest, match="source of echo.py is empty"):
        validate_spec(spec(source=source), LIMITS)


def test_source_over_the_limit_names_size_and_limit():
    limits = LimitsConfig(max_source_bytes=1024)
    source = "# " + "é" * 1000 + "\n"  # 2003 bytes in UTF-8, 1003 characters: the limit counts bytes
    with pytest.raises(InvalidRequest) as err:
        validate_spec(spec(source=source), limits)
    assert "2003 bytes" in err.value.message and "limit of 1024 bytes" in err.value.message


def test_source_at_the_limit_is_accepted():
    source = "x = 1\n" + "#" * (1024 - 7) + "\n"
    assert len(source.encode()) == 1024
    validate_spec(spec(source=source), LimitsConfig(max_source_bytes=1024))


def test_nul_bytes_are_rejected():
    with pytest.raises(InvalidRequest, match="null bytes"):
        validate_spec(spec(source="x = 1\0\n"), LIMITS)


# Guards: for NUL bytes compile() raises SyntaxError without filename/lineno ('syntax error in None, line None').
def test_nul_byte_message_names_the_file():
    with pytest.raises(InvalidRequest) as err:
        check_source("x = 1\0\n", "echo.py", 10_000)
    assert "echo.py" in err.value.message and "None" not in err.value.message


# -- resources ------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["num_cpus", "num_gpus", "memory_bytes"])
@pytest.mark.parametrize("value", [-1, math.nan, math.inf, -math.inf])
def test_negative_nan_and_infinite_amounts_are_rejected(field, value):
    with pytest.raises(InvalidRequest, match=f"{field} must be a finite number >= 0"):
        validate_resources(Resources(**{field: value}), LIMITS, 0.0)


@pytest.mark.parametrize("value", [-1, math.nan, math.inf])
def test_bad_custom_resource_amounts_are_rejected(value):
    with pytest.raises(InvalidRequest, match="custom resource tpu must be a finite number"):
        validate_resources(Resources(custom={"tpu": value}), LIMITS, 0.0)


@pytest.mark.parametrize("field,value,limit", [("num_cpus", 257, "256"), ("num_gpus", 65, "64"),
                                               ("memory_bytes", (1 << 40) + 1, f"{float(1 << 40):g}")])
def test_amounts_over_the_limit_are_rejected_naming_the_limit(field, value, limit):
    with pytest.raises(InvalidRequest) as err:
        validate_resources(Resources(**{field: value}), LIMITS, 0.0)
    assert f"{field}=" in err.value.message and f"(limit {limit})" in err.value.message


def test_custom_resource_over_the_limit_is_rejected():
    with pytest.raises(InvalidRequest, match="more than one service may ask for"):
        validate_resources(Resources(custom={"tpu": 2_000_000}), LIMITS, 0.0)


@pytest.mark.parametrize("key", ["CPU", "GPU", "memory", "object_store_memory", "bad name", "1tpu", ""])
def test_reserved_or_malformed_custom_resource_names_are_rejected(key):
    with pytest.raises(InvalidRequest, match="invalid custom resource name"):
        validate_resources(Resources(custom={key: 1}), LIMITS, 0.0)


def test_valid_resources_are_normalised_to_floats():
    res = validate_resources(Resources(num_cpus=2, num_gpus=1, memory_bytes=1024, custom={"tpu": 3}), LIMITS, 0.0)
    assert res == Resources(num_cpus=2.0, num_gpus=1.0, memory_bytes=1024, custom={"tpu": 3.0})
    assert isinstance(res.memory_bytes, int) and isinstance(res.custom["tpu"], float)


# -- env, labels, config --------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["1VAR", "MY-VAR", "MY VAR", "", "A=B"])
def test_bad_env_keys_are_rejected(key):
    with pytest.raises(InvalidRequest, match="invalid environment variable name"):
        validate_spec(spec(env={key: "x"}), LIMITS)


# Guards: the host applies env with os.environ.update(), which rejects NUL bytes; catch them at deploy time.
def test_env_value_with_nul_byte_is_rejected():
    with pytest.raises(InvalidRequest, match="invalid value for environment variable MY_VAR"):
        validate_spec(spec(env={"MY_VAR": "a\0b"}), LIMITS)


def test_env_value_size_is_bounded():
    validate_spec(spec(env={"MY_VAR": "x" * 32 * 1024}), LIMITS)
    with pytest.raises(InvalidRequest, match="at most 32 KiB"):
        validate_spec(spec(env={"MY_VAR": "x" * (32 * 1024 + 1)}), LIMITS)


@pytest.mark.parametrize("labels", [{"-team": "x"}, {"my team": "x"}, {"": "x"}, {"k" * 64: "x"},
                                    {"team": "v" * 257}])
def test_bad_labels_are_rejected(labels):
    with pytest.raises(InvalidRequest, match="invalid label"):
        validate_spec(spec(labels=labels), LIMITS)


def test_label_value_of_256_characters_is_accepted():
    validate_spec(spec(labels={"team": "v" * 256}), LIMITS)


def test_config_that_is_not_json_is_rejected():
    with pytest.raises(InvalidRequest, match="config is not valid JSON"):
        validate_spec(spec(config_json="{greeting: hi}"), LIMITS)


@pytest.mark.parametrize("config", ["[1, 2]", '"hi"', "3", "null"])
def test_config_that_is_not_an_object_is_rejected(config):
    with pytest.raises(InvalidRequest, match="config must be a JSON object"):
        validate_spec(spec(config_json=config), LIMITS)


# -- bounds ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-1, 1001])
def test_max_concurrency_out_of_bounds_is_rejected(value):
    with pytest.raises(InvalidRequest, match=f"max_concurrency must be between 1 and 1000, got {value}"):
        validate_spec(spec(max_concurrency=value), LIMITS)


def test_max_concurrency_bound_follows_the_limits():
    validate_spec(spec(max_concurrency=1000), LIMITS)
    with pytest.raises(InvalidRequest, match="between 1 and 10"):
        validate_spec(spec(max_concurrency=11), LimitsConfig(max_concurrency=10))


@pytest.mark.parametrize("value", [-2, 1001])
def test_max_restarts_out_of_bounds_is_rejected(value):
    with pytest.raises(InvalidRequest, match=f"max_restarts must be between 0 and 1000.*got {value}"):
        validate_spec(spec(max_restarts=value), LIMITS)


@pytest.mark.parametrize("value", [-1, 0, 1000])
def test_max_restarts_in_bounds_is_accepted(value):
    assert validate_spec(spec(max_restarts=value), LIMITS).max_restarts == value


# -- fingerprint ----------------------------------------------------------------------------------

def test_fingerprint_is_equal_for_equal_specs():
    a = spec(env={"A": "1", "B": "2"}, labels={"x": "y"}, resources=Resources(custom={"t": 1.0, "u": 2.0}))
    b = spec(env={"B": "2", "A": "1"}, labels={"x": "y"}, resources=Resources(custom={"u": 2.0, "t": 1.0}))
    assert a is not b and a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("changes", [
    {"name": "echo2"}, {"source": SOURCE + "\n"}, {"filename": "other.py"}, {"version": "2"},
    {"class_name": "Echo"}, {"resources": Resources(num_cpus=1)}, {"resources": Resources(custom={"t": 1})},
    {"env": {"A": "1"}}, {"config_json": "{}"}, {"labels": {"a": "b"}}, {"max_concurrency": 2},
    {"max_restarts": 0},
])
def test_fingerprint_changes_when_anything_changes(changes):
    assert spec(**changes).fingerprint() != spec().fingerprint()


def test_with_version_sets_only_the_version():
    assert spec().with_version("7") == spec(version="7")


@pytest.mark.parametrize("changes, message", [
    ({"class_name": "A" * 10_000}, "at most 128 characters"),
    ({"filename": "x" * 10_000 + ".py"}, "at most 128 printable"),
    ({"filename": "evil\x1b[2J.py"}, "at most 128 printable"),
    ({"env": {f"K{i}": "v" for i in range(1000)}}, "at most 128 environment variables"),
    ({"env": {f"K{i}": "v" * 30_000 for i in range(20)}}, "KiB in all"),
    ({"config_json": '{"x": "' + "y" * 300_000 + '"}'}, "over 256 KiB"),
])
def test_tenant_strings_that_travel_in_events_and_routes_are_bounded(changes, message):
    with pytest.raises(InvalidRequest, match=message):
        validate_spec(spec(**changes), LIMITS)


def test_a_reason_in_events_and_routes_is_capped():
    from solo.registry.state import MAX_REASON, RegistryState

    state = RegistryState()
    _, record = state.plan_deploy("acme", spec(), False)
    state.start_failed(record, "boom " * 100_000, replacing=False)
    reasons = [e.payload["reason"] for e in state.take_events() if "reason" in e.payload]
    assert reasons and max(len(r) for r in reasons) <= MAX_REASON
    assert all(len(r.message) <= MAX_REASON for r in state.routes())
