"""StreamSlots: the gateway-wide and per-tenant bounds on long-lived streams, and slots given back."""
from __future__ import annotations

import pytest

from solo.errors import Overloaded
from solo.gateway.streams import StreamSlots


def test_bounds_per_tenant_and_in_all_and_slots_come_back():
    slots = StreamSlots("Watch streams", total=3, per_tenant=2, total_key="[t] total", tenant_key="[t] per")
    a1, a2, b1 = slots.slot("a"), slots.slot("a"), slots.slot("b")
    a1.__enter__(), a2.__enter__()
    with pytest.raises(Overloaded, match=r"\[t\] per"), slots.slot("a"):
        pass
    b1.__enter__()
    with pytest.raises(Overloaded, match=r"\[t\] total"), slots.slot("c"):
        pass
    a1.__exit__(None, None, None)
    with slots.slot("c"):
        assert slots.open == {"a": 1, "b": 1, "c": 1}
    a2.__exit__(None, None, None)
    b1.__exit__(None, None, None)
    assert slots.open == {}


def test_a_slot_is_given_back_when_the_stream_fails():
    slots = StreamSlots("s", total=1, per_tenant=1, total_key="t", tenant_key="p")
    with pytest.raises(RuntimeError), slots.slot("a"):
        raise RuntimeError("the stream broke")
    with slots.slot("a"):
        pass
