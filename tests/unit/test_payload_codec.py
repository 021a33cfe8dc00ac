"""solo.core.payload: arguments and results as JSON text or raw bytes."""
from __future__ import annotations

import json

import pytest

from solo.core.payload import decode_args, decode_result, encode_args, encode_result
from solo.errors import InvalidRequest, ServiceFailed


def round_trip(*args, **kwargs):
    return decode_args(*encode_args(*args, **kwargs))


def test_keyword_arguments_travel_as_a_json_object():
    assert encode_args(a=1, b="x") == ('{"a": 1, "b": "x"}', None)
    assert round_trip(a=1, b=[1, 2]) == ((), {"a": 1, "b": [1, 2]})


def test_positional_arguments_travel_as_a_json_array():
    assert encode_args(1, "two") == ('[1, "two"]', None)
    assert round_trip(1, "two", None) == ((1, "two", None), {})


def test_a_single_dict_argument_stays_positional():
    assert round_trip({"a": 1}) == (({"a": 1},), {})


def test_json_object_becomes_kwargs_and_array_becomes_args():
    assert decode_args('{"x": 1}', None) == ((), {"x": 1})
    assert decode_args("[1, [2]]", None) == ((1, [2]), {})


@pytest.mark.parametrize("text,value", [("5", 5), ('"hi"', "hi"), ("true", True), ("null", None), ("1.5", 1.5)])
def test_json_scalar_becomes_the_single_argument(text, value):
    assert decode_args(text, None) == ((value,), {})


def test_bytes_travel_raw_and_become_the_single_argument():
    assert encode_args(b"\x00\xff") == (None, b"\x00\xff")
    assert encode_args(bytearray(b"ab")) == (None, b"ab")
    assert round_trip(b"\x00\xff") == ((b"\x00\xff",), {})
    assert decode_args("ignored when raw is set", b"") == ((b"",), {})


def test_no_arguments_travel_as_nothing():
    assert encode_args() == (None, None)
    assert decode_args(None, None) == ((), {})
    assert decode_args("", None) == ((), {})


def test_mixing_positional_and_keyword_arguments_is_rejected():
    with pytest.raises(InvalidRequest, match="either positional or keyword"):
        encode_args(1, a=2)


@pytest.mark.parametrize("text", ["{a: 1}", "[1,", "hello", "{'a': 1}"])
def test_invalid_json_is_an_invalid_request_that_says_what_to_send(text):
    with pytest.raises(InvalidRequest) as err:
        decode_args(text, None)
    assert "not valid JSON" in err.value.message and "JSON object of keyword arguments" in err.value.message


def test_absurdly_nested_json_is_an_invalid_request():
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        decode_args("[" * 100_000 + "]" * 100_000, None)


def test_results_encode_as_json_or_raw_bytes():
    assert encode_result({"a": [1, 2]}) == ('{"a": [1, 2]}', None)
    assert encode_result(None) == ("null", None)
    assert encode_result(b"raw") == (None, b"raw")
    assert encode_result(memoryview(b"mv")) == (None, b"mv")
    assert decode_result(*encode_result({"a": 1})) == {"a": 1}
    assert decode_result(*encode_result(b"raw")) == b"raw"
    assert decode_result(None, None) is None


@pytest.mark.parametrize("value", [object(), {1, 2}, {"when": json}])
def test_non_json_results_are_a_service_failure(value):
    with pytest.raises(ServiceFailed) as err:
        encode_result(value)
    assert "not JSON-serializable" in err.value.message and "return JSON values or bytes" in err.value.message
    assert err.value.exception_type == "TypeError"


def test_circular_result_is_a_service_failure():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ServiceFailed, match="not JSON-serializable"):
        encode_result(loop)
