"""/metrics: on loopback unless configured otherwise (whatever the gateway's own host), and behind a
bearer token when `[gateway] metrics_token_file` is set. Real HTTP against the real server."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest

from solo import metrics
from solo.config import load_config
from solo.errors import FailedPrecondition
from solo.gateway.server import start_metrics


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def this_machines_address() -> str | None:
    """A non-loopback address of this machine (None if it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 1))  # no packet is sent: only picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(**gateway):
        config = load_config(None, data_dir=str(tmp_path), gateway__metrics_port=-1,
                             **{f"gateway__{k}": v for k, v in gateway.items()})
        servers.append(start_metrics(config))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def test_metrics_listen_on_loopback_by_default_even_when_the_gateway_listens_everywhere(serve):
    metrics.CallSeries().get("acme", "ledger").ok.inc()
    server = serve(host="0.0.0.0")
    host, port = server.address
    assert host == "127.0.0.1"
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and 'tenant="acme"' in body
    outside = this_machines_address()
    if outside is not None:  # not reachable from the network
        with pytest.raises(OSError):
            socket.create_connection((outside, port), timeout=2).close()


def test_metrics_host_is_the_operators_choice(serve):
    assert serve(metrics_host="0.0.0.0").address[0] == "0.0.0.0"


def test_a_metrics_token_is_asked_for_and_checked(serve, tmp_path):
    token_file = tmp_path / "metrics.token"
    token_file.write_text("s3cret-scrape-token\n")
    metrics.CallSeries().get("acme", "ledger").ok.inc()
    port = serve(metrics_token_file=str(token_file)).address[1]
    url = f"http://127.0.0.1:{port}/metrics"
    status, body = get(url)
    assert status == 401 and "acme" not in body
    for wrong in ("wrong", "s3cret-scrape-toke", "s3cret-scrape-token-and-more", ""):
        status, body = get(url, wrong)
        assert status == 403 and "acme" not in body, wrong
    status, body = get(url, "s3cret-scrape-token")
    assert status == 200 and 'tenant="acme"' in body


def test_an_unreadable_or_empty_token_file_stops_the_start(serve, tmp_path):
    with pytest.raises(FailedPrecondition, match="metrics_token_file .* cannot be read"):
        serve(metrics_token_file=str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(FailedPrecondition, match="is empty"):
        serve(metrics_token_file=str(tmp_path / "empty"))


def test_forgetting_a_service_drops_all_its_series_and_only_its():
    series = metrics.CallSeries()
    gone, kept = series.get("acme", "gone"), series.get("acme", "kept")
    for one in (gone, kept):
        one.in_flight.inc()
        one.done("OK", 0.01)
        one.in_flight.inc()
        one.done("UNAVAILABLE", 0.01)
    metrics.forget_service("acme", "gone")
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'service="gone"' not in text and 'service="kept"' in text
    assert series.get("acme", "gone") is not gone  # a new service of that name starts from zero
