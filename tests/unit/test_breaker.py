"""Circuit breakers (pure): open after failures in a row, fail fast, one probe, close or reopen."""
from __future__ import annotations

import pytest

from solo.errors import Unavailable
from solo.gateway.breaker import Breakers

KEY = ("acme", "kv", "3")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_open_half_open_closed():
    clock, changes = Clock(), []
    breakers = Breakers(failures=3, open_seconds=5, clock=clock, on_change=lambda k, s, r: changes.append(s))
    for _ in range(2):
        assert breakers.before(KEY) is False
        breakers.record(KEY, True, "the host is unreachable")
    breakers.record(KEY, False)  # a success in between: the count starts again
    for _ in range(3):
        breakers.before(KEY)
        breakers.record(KEY, True, "timed out")
    assert breakers.state(KEY) == "open" and changes == ["open"]
    with pytest.raises(Unavailable, match="last: timed out.*circuit breaker is open") as err:
        breakers.before(KEY)
    assert 0 < err.value.retry_after <= 5
    clock.t = 5
    assert breakers.before(KEY) is True  # the probe
    with pytest.raises(Unavailable):
        breakers.before(KEY)  # only one probe at a time
    breakers.record(KEY, True, "still down")
    assert breakers.state(KEY) == "open" and changes == ["open", "half_open", "open"]
    clock.t = 10
    assert breakers.before(KEY) is True
    breakers.record(KEY, False)
    assert breakers.state(KEY) == "closed" and changes[-1] == "closed"
    assert breakers.before(KEY) is False


def test_versions_have_their_own_breaker_and_old_ones_are_forgotten():
    breakers = Breakers(failures=1, clock=Clock())
    breakers.record(KEY, True, "down")
    assert breakers.state(("acme", "kv", "4")) == "closed"
    breakers.forget({("acme", "kv", "4")})
    assert breakers.state(KEY) == "closed"
