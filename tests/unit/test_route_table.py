"""solo.core.routes and the pure part of solo.core.dispatch: resolving (tenant, service) to a host."""
from __future__ import annotations

import pytest

from solo.core.dispatch import Dispatcher
from solo.core.routes import Route, RouteTable
from solo.errors import NotFound, Unavailable

RUNNING = Route("acme", "echo", "1", "RUNNING", "10.0.0.1:5000", "key-1")


def test_replace_installs_a_newer_version():
    table = RouteTable()
    table.replace(3, [RUNNING, Route("acme", "kv", "2", "STARTING")])
    assert table.version == 3 and len(table) == 2
    assert table.get("acme", "echo") == RUNNING


def test_replace_ignores_an_older_or_equal_version():
    table = RouteTable()
    table.replace(3, [RUNNING])
    table.replace(3, [])
    table.replace(2, [])
    assert table.version == 3 and table.get("acme", "echo") == RUNNING


def test_replace_drops_routes_that_are_gone():
    table = RouteTable()
    table.replace(1, [RUNNING])
    table.replace(2, [Route("acme", "kv", "1", "RUNNING", "10.0.0.2:1", "k")])
    assert table.get("acme", "echo") is None and len(table) == 1


def test_routes_are_per_tenant():
    table = RouteTable()
    table.replace(1, [RUNNING])
    assert table.get("other", "echo") is None


def test_addresses_skip_routes_without_one():
    table = RouteTable()
    table.replace(1, [RUNNING, Route("acme", "kv", "1", "RESTARTING"), Route("b", "x", "1", "RUNNING", "h:2", "k")])
    assert table.addresses() == {"10.0.0.1:5000", "h:2"}


def dispatcher(*routes: Route) -> Dispatcher:
    table = RouteTable()
    table.replace(1, list(routes))
    return Dispatcher(table)


def test_route_returns_a_running_route():
    assert dispatcher(RUNNING).route("acme", "echo") == RUNNING


def test_unknown_service_is_not_found():
    with pytest.raises(NotFound, match="service 'nope' not found; deploy it first"):
        dispatcher(RUNNING).route("acme", "nope")


def test_another_tenants_service_is_not_found_like_a_missing_one():
    d = dispatcher(RUNNING)
    with pytest.raises(NotFound) as theirs:
        d.route("other", "echo")
    with pytest.raises(NotFound) as missing:
        dispatcher().route("other", "echo")
    assert theirs.value.message == missing.value.message


@pytest.mark.parametrize("state,expected", [
    ("STARTING", "service 'echo' is starting; retry in a moment"),
    ("RESTARTING", "service 'echo' crashed and is restarting; retry in a moment"),
    ("STOPPING", "service 'echo' is stopping"),
    ("STOPPED", "service 'echo' is stopped; deploy it again to call it"),
    ("FAILED", "service 'echo' has failed"),
])
def test_unroutable_states_are_unavailable_with_a_state_specific_message(state, expected):
    with pytest.raises(Unavailable) as err:
        dispatcher(Route("acme", "echo", "1", state)).route("acme", "echo")
    assert err.value.message == expected


def test_unavailable_message_carries_the_registry_message():
    route = Route("acme", "echo", "1", "FAILED", message="restart limit 3 reached: OOM")
    with pytest.raises(Unavailable, match=r"has failed \(restart limit 3 reached: OOM\)$"):
        dispatcher(route).route("acme", "echo")


def test_running_route_without_an_address_is_unavailable():
    with pytest.raises(Unavailable):
        dispatcher(Route("acme", "echo", "1", "RUNNING")).route("acme", "echo")
