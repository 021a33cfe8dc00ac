"""The REST gateway end to end: a real Solo, a real HTTP client over 127.0.0.1, answers compared with gRPC's."""
from __future__ import annotations

import json

import pytest

from solo.errors import NotFound
from tests.conftest import EXAMPLES, source, wait_for
from tests.rest.conftest import client, sse_events

SLOW = source("""
    import time

    class Slow:
        def nap(self, seconds: float):
            time.sleep(seconds)
            return seconds

        def hello(self, who: str = "world"):
            print(f"hello {who}", flush=True)
            return f"hello {who}"

        def fail(self):
            raise KeyError("nope")
""")


def test_deploy_call_list_get_stop(http_alice, alice, name):
    deployed = http_alice.post("/v1/services", json={"name": name, "source": SLOW, "filename": "slow.py"},
                               headers={"X-Request-Id": f"deploy-{name}"})
    assert deployed.status_code == 200, deployed.text
    # the same event a gRPC deploy writes, with the HTTP request's id and the token's principal
    first = http_alice.get("/v1/events", params={"subject": name, "limit": 1}).json()["events"][0]
    assert (first["type"], first["tenant"], first["correlation_id"]) == ("service.deploying", "alice", f"deploy-{name}")
    assert first["principal"].startswith("tenant:alice/token:")
    assert deployed.json()["service"]["state"] == "RUNNING"
    assert deployed.json()["changed"] is True
    assert deployed.headers["X-Request-Id"]
    # the same service through gRPC and REST
    assert alice.get(name)["version"] == deployed.json()["service"]["version"]
    call = http_alice.post(f"/v1/services/{name}/methods/hello", json={"who": "rest"})
    assert (call.status_code, call.json(), call.headers["content-type"]) == (200, "hello rest", "application/json")
    assert http_alice.post(f"/v1/services/{name}/methods/hello", json=["positional"]).json() == "hello positional"
    assert http_alice.post(f"/v1/services/{name}/methods/hello").json() == "hello world"  # no body: no arguments
    # counted in the tenant's metrics like gRPC calls
    counted = next(s for s in alice.metrics()["services"] if s["service"] == name)
    assert int(counted["calls"]) == 3
    listed = http_alice.get("/v1/services").json()["services"]
    assert name in [s["name"] for s in listed]
    got = http_alice.get(f"/v1/services/{name}").json()
    assert got["name"] == name and "hello" in got["methods"]
    stopped = http_alice.post(f"/v1/services/{name}:stop")
    assert stopped.json()["service"]["state"] == "STOPPED"
    removed = http_alice.delete(f"/v1/services/{name}")
    assert removed.status_code == 200
    assert http_alice.get(f"/v1/services/{name}").status_code == 404


def test_streaming_call_is_server_sent_events(http_alice, name):
    assert http_alice.post("/v1/services", json={"name": name, "source": (EXAMPLES / "ticker.py").read_text(),
                                                 "filename": "ticker.py"}).status_code == 200
    with http_alice.stream("POST", f"/v1/services/{name}/methods/countdown:stream", json=[3]) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert [e["data"] for e in events if e["event"] == "message"] == [3, 2, 1, "liftoff"]
    assert events[-1]["event"] == "end"
    # an error before the first message is an HTTP status, like a unary call's
    missing = http_alice.post(f"/v1/services/{name}/methods/nothing:stream", json=[])
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    http_alice.delete(f"/v1/services/{name}")


def test_watch_is_server_sent_events_and_resumes_from_last_event_id(http_alice, name):
    http_alice.post("/v1/services", json={"name": name, "source": SLOW, "filename": "slow.py"})
    params = {"subject": name, "after_id": 0}
    with http_alice.stream("GET", "/v1/events:watch", params=params) as response:
        assert response.status_code == 200
        events = sse_events(response, stop=lambda e: e["data"].get("type") == "service.started")
    assert [e["data"]["type"] for e in events][:2] == ["service.deploying", "service.started"]
    assert all(e["data"]["tenant"] == "alice" and e["id"] == str(e["data"]["id"]) for e in events)
    http_alice.delete(f"/v1/services/{name}")
    # an EventSource reconnecting sends Last-Event-ID: the stream goes on after it
    with http_alice.stream("GET", "/v1/events:watch", params={"subject": name},
                           headers={"Last-Event-ID": events[-1]["id"]}) as response:
        later = sse_events(response, stop=lambda e: e["data"].get("type") == "service.removed")
    assert later[0]["data"]["id"] > events[-1]["data"]["id"]
    assert later[-1]["data"]["type"] == "service.removed"
    # the same events as a page
    page = http_alice.get("/v1/events", params={"subject": name, "limit": 100}).json()
    assert [e["type"] for e in page["events"]][-1] == "service.removed"


def test_errors_mean_what_grpc_says(http_alice, alice, name):
    """Each error has the status of its code and the message a gRPC client gets for the same request."""
    with pytest.raises(NotFound) as grpc_error:
        alice.get(name)
    answer = http_alice.get(f"/v1/services/{name}")
    assert answer.status_code == 404
    body = answer.json()
    assert body["code"] == "NOT_FOUND" and body["message"] == grpc_error.value.message
    assert body["request_id"] == answer.headers["X-Request-Id"]
    bad_name = http_alice.get("/v1/services/Bad_Name")
    assert bad_name.status_code == 400 and bad_name.json()["code"] == "INVALID_ARGUMENT"
    # a request id the client sends is the one in the answer (and in the events)
    assert http_alice.get(f"/v1/services/{name}", headers={"X-Request-Id": "trace-123"}).json()["request_id"] == \
        "trace-123"
    # the service's own exception: 502, its type in a header
    http_alice.post("/v1/services", json={"name": name, "source": SLOW, "filename": "slow.py"})
    failed = http_alice.post(f"/v1/services/{name}/methods/fail")
    assert failed.status_code == 502 and failed.json()["code"] == "SERVICE_FAILED"
    assert failed.headers["Solo-Exception-Type"] == "KeyError"
    # the deadline: Solo-Timeout is gRPC's deadline
    late = http_alice.post(f"/v1/services/{name}/methods/nap", json=[5], headers={"Solo-Timeout": "0.5"})
    assert late.status_code == 504 and late.json()["code"] == "DEADLINE_EXCEEDED"
    assert http_alice.post(f"/v1/services/{name}/methods/nap", json=[0], headers={"Solo-Timeout": "x"}).status_code \
        == 400
    # deploying a different spec under the same name without replace
    other = http_alice.post("/v1/services", json={"name": name, "source": SLOW + "\n# v2\n", "filename": "slow.py"})
    assert other.status_code == 409 and other.json()["code"] == "ALREADY_EXISTS"
    assert http_alice.post("/v1/services", params={"replace": "true"},
                           json={"name": name, "source": SLOW + "\n# v2\n", "filename": "slow.py"}).status_code == 200
    http_alice.delete(f"/v1/services/{name}")


def test_requests_that_do_not_parse_are_400(http_alice, name):
    cases = [
        http_alice.post("/v1/services", content=b"{not json", headers={"Content-Type": "application/json"}),
        http_alice.post("/v1/services", content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
        http_alice.post(f"/v1/services/{name}:swap", json=["a list"]),
        http_alice.post("/v1/services", json={"name": name, "nosuchfield": 1}),
        http_alice.post("/v1/services", json={"name": name, "max_concurrency": -1}),
        http_alice.post("/v1/services", json={"name": name, "resources": {"num_cpus": "many"}}),
        http_alice.get("/v1/events", params={"limit": "ten"}),
        http_alice.get("/v1/events", params={"after_id": "-1"}),
        http_alice.get("/v1/events", params={"nosuch": "1"}),
        http_alice.get("/v1/services", params={"page": "2"}),
        http_alice.post(f"/v1/services/{name}/methods/f", content=b"[1,", headers={"Content-Type": "application/json"}),
        http_alice.post(f"/v1/services/{name}:swap", json={"name": "other", "source": ""}),
        http_alice.post("/v1/services", content=b"[" * 100_000 + b"]" * 100_000),
        http_alice.get("/v1/events:watch", headers={"Last-Event-ID": "yesterday"}),
    ]
    for answer in cases:
        assert answer.status_code == 400, (answer.request.url, answer.text)
        body = answer.json()
        assert body["code"] == "INVALID_ARGUMENT" and body["message"] and body["request_id"]


def test_oversized_body_is_413(http_alice, name):
    big = b"x" * (16 * 1024 * 1024 + 1)
    answer = http_alice.post(f"/v1/services/{name}/methods/f", content=big,
                             headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 413 and "max_body_bytes" in answer.json()["message"]

    def chunks():  # no Content-Length: counted while read
        for _ in range(17):
            yield b"x" * (1024 * 1024)
    answer = http_alice.post(f"/v1/services/{name}/methods/f", content=chunks(),
                             headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 413


def test_no_or_bad_token_is_401(http_anonymous, rest_url):
    answer = http_anonymous.get("/v1/services")
    assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHENTICATED"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    with client(rest_url, "not-a-token") as garbage:
        assert garbage.get("/v1/whoami").status_code == 401
    # nothing happens for an unauthenticated call
    assert http_anonymous.post("/v1/services", json={"name": "x", "source": SLOW}).status_code == 401
    unknown = http_anonymous.get("/v1/nosuch")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"


def test_a_tenant_cannot_see_or_call_anothers_service(http_alice, http_bob, name):
    assert http_bob.post("/v1/services", json={"name": name, "source": SLOW, "filename": "slow.py"}).status_code == 200
    missing = f"{name}-missing"
    answers = {}
    for target in (name, missing):
        answers[target] = [
            http_alice.get(f"/v1/services/{target}"),
            http_alice.post(f"/v1/services/{target}/methods/hello"),
            http_alice.post(f"/v1/services/{target}/methods/hello:stream"),
            http_alice.post(f"/v1/services/{target}:stop"),
            http_alice.delete(f"/v1/services/{target}"),
            http_alice.post(f"/v1/services/{target}/methods/hello", params={"owner": "bob"}),
        ]
    # bob's service and a service that does not exist: the same status, the same words
    for theirs, nothing in zip(answers[name], answers[missing]):
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["message"].replace(name, "<n>") == nothing.json()["message"].replace(missing, "<n>")
    assert name not in [s["name"] for s in http_alice.get("/v1/services").json()["services"]]
    assert all(e["subject"] != name for e in http_alice.get("/v1/events", params={"subject": name}).json()["events"])
    assert http_alice.get("/v1/events", params={"tenant": "bob"}).status_code == 403
    assert http_alice.get("/v1/events:watch", params={"tenant": "bob"}).status_code == 403
    assert name not in json.dumps(http_alice.get("/v1/metrics").json())
    assert http_alice.get(f"/v1/services/{name}/logs").status_code == 404
    # still there for bob, and callable by alice once granted
    assert http_bob.post(f"/v1/services/{name}/methods/hello").json() == "hello world"
    assert http_bob.post(f"/v1/services/{name}:grant", json={"to_tenant": "alice"}).status_code == 200
    assert wait_for(lambda: http_alice.post(f"/v1/services/{name}/methods/hello", params={"owner": "bob"},
                                            json=["alice"]).status_code == 200)
    assert http_alice.get("/v1/grants").json()["received"] == [{"owner": "bob", "service": name,
                                                                "to_tenant": "alice"}]
    http_bob.delete(f"/v1/services/{name}")


def test_rate_limit_is_429_with_retry_after(solo, operator, rest_url):
    with client(rest_url, operator.mint_token("ratey")) as ratey:  # 2 calls/s, burst 3 (tests/conftest.py)
        answers = [ratey.get("/v1/whoami") for _ in range(10)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    assert refused[0].json()["code"] == "RESOURCE_EXHAUSTED"
    assert int(refused[0].headers["Retry-After"]) >= 1 and int(refused[0].headers["Retry-After-Ms"]) >= 1


def test_whoami_tokens_metrics_discovery(http_alice, operator, rest_url, name):
    assert http_alice.get("/v1/whoami").json()["tenant"] == "alice"
    with client(rest_url, operator.token) as op:
        minted = op.post("/v1/tokens", json={"tenant": "restco", "rights": ["discover"]}).json()
    assert minted.get("tenant") == "restco" and minted["rights"] == ["discover"], minted
    with client(rest_url, minted["token"]) as restco:
        assert restco.get("/v1/whoami").json() == {"tenant": "restco", "operator": False,
                                                   "token_id": minted["revocation_id"][:12]}
        assert restco.post("/v1/services", json={"name": name, "source": SLOW}).status_code == 403
        with client(rest_url, operator.token) as op:
            assert op.post("/v1/tokens:revoke", json={"revocation_id": minted["revocation_id"]}).status_code == 200
        assert wait_for(lambda: restco.get("/v1/whoami").status_code == 401)
    registered = http_alice.post(f"/v1/discovery/{name}:register", json={"address": "10.0.0.7:9000",
                                                                         "ttl_seconds": 60, "labels": {"zone": "a"}})
    assert registered.status_code == 200, registered.text
    found = http_alice.get("/v1/discovery", params={"name": name, "labels": "zone=a"}).json()["endpoints"]
    assert [e["address"] for e in found] == ["10.0.0.7:9000"]
    assert http_alice.get("/v1/discovery", params={"name": name, "labels": "zone=b"}).json()["endpoints"] == []
    assert http_alice.post(f"/v1/discovery/{name}:deregister",
                           json={"instance_id": registered.json()["instance_id"]}).status_code == 200
    assert http_alice.get("/v1/metrics").json()["tenant"] == "alice"


def test_logs_as_json_and_followed_as_server_sent_events(http_alice, http_bob, name):
    assert http_alice.post("/v1/services", json={"name": name, "source": SLOW, "filename": "slow.py"}).status_code == 200
    http_alice.post(f"/v1/services/{name}/methods/hello", json=["first"])

    def kept():
        lines = http_alice.get(f"/v1/services/{name}/logs").json()["lines"]
        return lines if any(line["text"] == "hello first" for line in lines) else None
    lines = wait_for(kept)
    said = next(line for line in lines if line["text"] == "hello first")
    assert said["stream"] == "stdout" and said["version"] == "1"
    assert http_alice.get(f"/v1/services/{name}/logs", params={"tail": 1}).json()["lines"] == lines[-1:]
    with http_alice.stream("GET", f"/v1/services/{name}/logs", params={"follow": "true", "tail": 1}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        http_alice.post(f"/v1/services/{name}/methods/hello", json=["second"])
        events = sse_events(response, stop=lambda e: e["data"].get("text") == "hello second")
    assert events[-1]["data"]["text"] == "hello second"
    # another tenant: like a service that does not exist
    theirs = http_bob.get(f"/v1/services/{name}/logs")
    nothing = http_bob.get(f"/v1/services/{name}-missing/logs")
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.json()["message"].replace(name, "<n>") == nothing.json()["message"].replace(f"{name}-missing", "<n>")
    assert http_bob.get(f"/v1/services/{name}/logs", params={"follow": "true"}).status_code == 404
    assert http_alice.get(f"/v1/services/{name}/logs", params={"tail": "-1"}).status_code == 400
    http_alice.delete(f"/v1/services/{name}")


def test_a_shed_call_is_429_with_retry_after(solo, operator, rest_url, name):
    """quotaco may have one call in flight (tests/conftest.py): a second one is shed at once, as on gRPC."""
    from concurrent.futures import ThreadPoolExecutor

    from solo import SoloClient
    from tests.conftest import in_flight

    token = operator.mint_token("quotaco")
    with client(rest_url, token) as quotaco, SoloClient(solo.address, token) as grpc_quotaco, \
            ThreadPoolExecutor(1) as pool:
        assert quotaco.post("/v1/services", json={"name": name, "source": SLOW, "filename": "slow.py"}).status_code \
            == 200
        try:
            napping = pool.submit(quotaco.post, f"/v1/services/{name}/methods/nap", json=[3])
            wait_for(lambda: in_flight(grpc_quotaco, name) >= 1)
            shed = quotaco.post(f"/v1/services/{name}/methods/nap", json=[0])
            assert shed.status_code == 429, shed.text
            assert shed.json()["code"] == "RESOURCE_EXHAUSTED" and "max_concurrent_calls" in shed.json()["message"]
            assert int(shed.headers["Retry-After"]) >= 1 and int(shed.headers["Retry-After-Ms"]) >= 1
            assert napping.result(60).json() == 3
        finally:
            quotaco.delete(f"/v1/services/{name}")


def test_secrets_and_config(http_alice, http_bob, operator, rest_url, name):
    import base64

    key = f"{name}/password"
    put = http_alice.put(f"/v1/secrets/{key}", json={"value": base64.b64encode(b"s3cret").decode()})
    assert put.status_code == 200, put.text
    assert put.json() == {"key": key, "version": 1}
    got = http_alice.get(f"/v1/secrets/{key}").json()
    assert base64.b64decode(got["value"]) == b"s3cret" and got["version"] == 1
    assert [s["key"] for s in http_alice.get("/v1/secrets", params={"prefix": name}).json()["secrets"]] == [key]
    # another tenant's secret is like a missing one, and never listed
    theirs, nothing = http_bob.get(f"/v1/secrets/{key}"), http_bob.get(f"/v1/secrets/{key}-missing")
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.json()["message"].replace(key, "<k>") == nothing.json()["message"].replace(f"{key}-missing", "<k>")
    assert http_bob.get("/v1/secrets", params={"prefix": name}).json()["secrets"] == []
    assert http_bob.delete(f"/v1/secrets/{key}").status_code == 404
    assert http_alice.put(f"/v1/secrets/{key}", json={"value": "not base64!"}).status_code == 400
    assert http_alice.delete(f"/v1/secrets/{key}").json()["versions"] == 1
    assert http_alice.get(f"/v1/secrets/{key}").status_code == 404
    # operator-only RPCs
    assert http_alice.get("/v1/config").status_code == 403
    assert http_alice.post("/v1/vault:rotate").status_code == 403
    with client(rest_url, operator.token) as op:
        shown = op.get("/v1/config")
        assert shown.status_code == 200 and "[gateway]" in shown.json()["toml"]
