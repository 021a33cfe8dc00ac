"""Bad input that once ended INTERNAL or UNKNOWN: event time bounds, after_id, nesting, corrupt bytes, long messages."""
from __future__ import annotations

import dataclasses

import pytest

from solo._proto import solo_pb2 as pb
from solo.config import LimitsConfig
from solo.core.payload import TooDeep, decode_args, loads_bounded
from solo.core.spec import ServiceSpec, validate_spec
from solo.errors import InvalidRequest
from solo.gateway import events
from solo.gateway.status import MAX_DETAILS_BYTES, Undecodable, _wire_size, bounded_details, lenient_deserializer
from solo.security.tokens import Principal

ALICE = Principal("alice")
SOURCE = "class Echo:\n    def echo(self, x):\n        return x\n"


@pytest.mark.parametrize("field", ["since_us", "until_us"])
@pytest.mark.parametrize("value", [2**62, -2**62, 2**63 - 1, -2**63, events.MAX_TIME_US + 1, events.MIN_TIME_US - 1])
def test_times_outside_the_calendar_are_invalid_with_the_range(field, value):
    with pytest.raises(InvalidRequest) as err:
        events.scope(ALICE, pb.EventFilter(**{field: value}))
    assert f"{field} {value} is outside the calendar" in err.value.message
    assert str(events.MIN_TIME_US) in err.value.message and str(events.MAX_TIME_US) in err.value.message


def test_the_ends_of_the_calendar_are_valid_and_exact():
    s = events.scope(ALICE, pb.EventFilter(since_us=events.MIN_TIME_US, until_us=events.MAX_TIME_US))
    assert (s.since.year, s.until.year, s.until.microsecond) == (1, 9999, 999_999)
    one = events.scope(ALICE, pb.EventFilter(since_us=1_700_000_000_123_456))
    assert one.since.timestamp() == 1_700_000_000.123456 and one.until is None


def test_until_before_since_is_still_refused():
    with pytest.raises(InvalidRequest, match="until must be later than since"):
        events.scope(ALICE, pb.EventFilter(since_us=2_000_000, until_us=1_000_000))


@pytest.mark.parametrize("after_id", [2**63, 2**64 - 1])
def test_huge_after_id_is_clamped_so_ids_plus_a_page_fit_in_uint64(after_id):
    s = events.scope(ALICE, pb.EventFilter(after_id=after_id))
    assert s.after_id == events.MAX_AFTER_ID and s.after_id + 1 + events.MAX_PAGE < 2**64
    assert events.scope(ALICE, pb.EventFilter(after_id=41)).after_id == 41


def test_json_nesting_is_bounded():
    assert loads_bounded("[" * 64 + "]" * 64, 64) is not None
    for text in ("[" * 65 + "]" * 65, '{"a": ' * 65 + "1" + "}" * 65, "[" * 100_000, '{"a": ' * 100_000):
        with pytest.raises(TooDeep, match="nested deeper than 64 levels"):
            loads_bounded(text, 64)
    with pytest.raises(ValueError):
        loads_bounded("{x", 64)
    assert loads_bounded('{"a": [1, {"b": 2}], "c": "[[[[["}', 3) == {"a": [1, {"b": 2}], "c": "[[[[["}


@pytest.mark.parametrize("config, match", [("[" * 100_000, "nested deeper than 64 levels"),
                                           ('{"a": ' * 65 + "1" + "}" * 65, "nested deeper than 64 levels"),
                                           ("{x", "config is not valid JSON")])
def test_config_json_too_deep_or_broken_is_invalid(config, match):
    spec = ServiceSpec(name="echo", source=SOURCE, config_json=config)
    with pytest.raises(InvalidRequest, match=match):
        validate_spec(spec, LimitsConfig())
    assert validate_spec(dataclasses.replace(spec, config_json='{"a": ' * 63 + "1" + "}" * 63), LimitsConfig())


def test_call_arguments_past_the_recursion_limit_are_invalid():
    with pytest.raises(InvalidRequest, match="arguments are not valid JSON"):
        decode_args("[" * 100_000, None)


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe"])
def test_corrupt_bytes_become_an_undecodable_that_names_the_message(body):
    got = lenient_deserializer(pb.InvokeRequest)(body)
    assert isinstance(got, Undecodable)
    assert got.error().code == "INVALID_ARGUMENT"
    assert got.error().message.startswith("the request is not a valid InvokeRequest: ")
    good = pb.InvokeRequest(service="kv", method="get").SerializeToString()
    assert lenient_deserializer(pb.InvokeRequest)(good) == pb.InvokeRequest(service="kv", method="get")


@pytest.mark.parametrize("message", ["x" * 100_000, "🙂" * 5000, "%" * 5000, "é" * 3000 + "x" * 3000])
def test_long_messages_are_cut_to_fit_the_wire(message):
    cut = bounded_details(message)
    assert _wire_size(cut) <= MAX_DETAILS_BYTES and cut.endswith("(message cut)")
    assert message.startswith(cut[: -len(" ... (message cut)")])


def test_short_messages_are_untouched():
    assert bounded_details("service 'kv' not found") == "service 'kv' not found"
    assert bounded_details("é" * 600) == "é" * 600
