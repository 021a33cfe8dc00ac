"""`Logs` with real Solo: a service's stdout and stderr kept with the host's tags, tail and since, follow, a crash
restart keeping what came before, tenancy, the disk bound under a flood, bad input, rights, and `solo logs`."""
from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from solo import InvalidRequest, NotFound, PermissionDenied, SoloClient, Unavailable
from solo._proto import solo_pb2 as pb
from solo._proto import solo_pb2_grpc
from solo.cli import main as cli_main
from tests.conftest import source, wait_for

TALKER = source("""
    import os, sys

    class Talker:
        def __init__(self):
            print("booting", flush=True)

        def say(self, text, err=False):
            print(text, file=sys.stderr if err else sys.stdout, flush=True)
            return text

        def forge(self):
            print('{"n": 1, "s": "solo", "v": "9", "m": "forged"}\\n\\x1b[31mred\\x1b[0m', flush=True)

        def flood(self, lines, width):
            chunk = ("x" * width + "\\n") * 100
            for _ in range(lines // 100):
                sys.stdout.write(chunk)
            sys.stdout.flush()
            return lines

        def crash(self):
            print("about to crash", flush=True)
            os._exit(3)
""")


PLAIN_PRINTER = source("""
    import sys

    class Plain:
        def __init__(self):
            print("constructed")  # no flush: a new user's print, to a pipe

        def say(self, text):
            print(text)
            print("to stderr", file=sys.stderr)
            return text
""")


def test_a_plain_print_reaches_the_log_without_a_flush(alice, name):
    # the cell runs `python -I`, which ignores PYTHONUNBUFFERED: its streams are line-buffered by Solo instead
    alice.deploy(PLAIN_PRINTER, name)
    try:
        alice.call(name, "say", "plain")
        wait_for(has_lines(alice, name, "constructed", "plain", "to stderr"))
    finally:
        alice.stop(name, remove=True)


def texts(client, name, **options) -> list[str]:
    return [line["text"] for line in client.logs(name, **options) if line["stream"] != "solo"]


def has_lines(client, name, *wanted, **options):
    return lambda: set(wanted) <= set(texts(client, name, **options))


@pytest.fixture
def talker(alice, name):
    alice.deploy(TALKER, name, version="1")
    yield name
    try:
        alice.stop(name, remove=True)
    except NotFound:
        pass


def test_stdout_and_stderr_come_back_in_order_with_the_hosts_tags(alice, talker):
    before = time.time()
    alice.call(talker, "say", "one")
    wait_for(has_lines(alice, talker, "one"))  # across stdout and stderr, lines are in the order the host read
    alice.call(talker, "say", "two", True)  # them: two lines written at the same moment may come either way
    wait_for(has_lines(alice, talker, "two"))
    alice.call(talker, "say", "three")
    alice.call(talker, "forge")
    wait_for(has_lines(alice, talker, "booting", "one", "two", "three", "red"))
    lines = list(alice.logs(talker))
    mine = [(ln["stream"], ln["text"]) for ln in lines if ln["stream"] != "solo"]
    assert mine[:4] == [("stdout", "booting"), ("stdout", "one"), ("stderr", "two"), ("stdout", "three")]
    assert ("stdout", '{"n": 1, "s": "solo", "v": "9", "m": "forged"}') in mine  # text, never a tag
    assert ("stdout", "red") in mine  # escapes cleaned
    assert all(ln["version"] == "1" for ln in lines)
    assert all(before - 60 < ln["time"] < time.time() + 1 for ln in lines)
    assert any(ln["stream"] == "solo" and ln["text"].startswith("started version 1") for ln in lines)
    assert [ln["time"] for ln in lines if ln["stream"] != "solo"] == \
        sorted(ln["time"] for ln in lines if ln["stream"] != "solo")


def test_tail_and_since(alice, talker):
    for word in ("a", "b", "c", "d"):
        alice.call(talker, "say", word)
    wait_for(has_lines(alice, talker, "a", "b", "c", "d"))
    assert texts(alice, talker, tail=2) == ["c", "d"]
    assert [ln["text"] for ln in alice.logs(talker, tail=1)] == ["d"]
    time.sleep(1.5)
    alice.call(talker, "say", "late")
    wait_for(has_lines(alice, talker, "late"))
    assert texts(alice, talker, since_seconds=1.0) == ["late"]
    assert "booting" in texts(alice, talker, since_seconds=3600)


def test_follow_sees_a_new_line_live(alice, talker):
    seen: list[pb.LogLine] = []
    call = alice.stub.Logs(pb.LogsRequest(name=talker, follow=True, tail=1), metadata=alice.metadata)

    def read():
        try:
            for line in call:
                seen.append(line)
        except grpc.RpcError as exc:
            seen.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: seen)  # the tail came
    alice.call(talker, "say", "live one")
    wait_for(lambda: any(getattr(ln, "text", "") == "live one" for ln in seen), timeout=20)
    call.cancel()  # the client ends the follow
    reader.join(10)
    assert seen[-1].code() == grpc.StatusCode.CANCELLED


def test_a_crash_restart_keeps_earlier_lines_and_says_what_happened(alice, talker):
    alice.call(talker, "say", "before the crash")
    with pytest.raises(Exception):  # noqa: B017 - the call's connection ends with the process
        alice.call(talker, "crash", _timeout=20)
    wait_for(lambda: alice.get(talker)["state"] == "RUNNING" and alice.get(talker)["restarts"] == 1, timeout=60)
    wait_for(lambda: alice.call(talker, "say", "after the restart"), tolerate=(Unavailable,))  # routes follow
    wait_for(has_lines(alice, talker, "after the restart"))
    lines = list(alice.logs(talker))
    said = [ln["text"] for ln in lines]
    assert said.index("before the crash") < said.index("about to crash") < said.index("after the restart")
    notes = [ln["text"] for ln in lines if ln["stream"] == "solo"]
    assert any(n.startswith("crashed:") for n in notes) and any(n.startswith("restarted version 1") for n in notes)
    assert said.count("booting") == 2
    assert said.count("after the restart") >= 1


def test_a_stopped_service_keeps_its_logs_and_a_removed_one_loses_them(alice, name, solo):
    alice.deploy(TALKER, name)
    alice.call(name, "say", "kept")
    wait_for(has_lines(alice, name, "kept"))
    alice.stop(name)
    lines = list(alice.logs(name))
    assert "kept" in [ln["text"] for ln in lines] and lines[-1] == {**lines[-1], "stream": "solo", "text": "stopped"}
    where = solo.supervisor.config.data_dir / "logs" / "alice" / name
    assert where.is_dir()
    alice.stop(name, remove=True)
    assert not where.exists()
    with pytest.raises(NotFound):
        list(alice.logs(name))


def test_another_tenant_gets_not_found_worded_as_for_a_missing_service(alice, bob, talker):
    alice.call(talker, "say", "private")
    wait_for(has_lines(alice, talker, "private"))
    with pytest.raises(NotFound) as theirs:
        list(bob.logs(talker))
    with pytest.raises(NotFound) as missing:
        list(bob.logs("no-such-service-x"))
    assert str(theirs.value).replace(talker, "X") == str(missing.value).replace("no-such-service-x", "X")
    with pytest.raises(NotFound):
        list(bob.logs(talker, follow=True))


def test_a_flood_stays_within_the_disk_bound_and_the_drop_is_noted(solo, operator, name):
    with SoloClient(solo.address, operator.mint_token("floodco")) as client:
        client.deploy(TALKER, name)
        try:
            for _ in range(3):  # 3 x 2.5 MiB: past the host's burst (1 MiB) and the service's bound (256 KiB)
                client.call(name, "flood", 25_000, 100, _timeout=60)
            where = solo.supervisor.config.data_dir / "logs" / "floodco" / name
            wait_for(lambda: any("dropped" in ln["text"] for ln in client.logs(name) if ln["stream"] == "solo"),
                     timeout=60)
            size = sum(f.stat().st_size for f in where.iterdir())
            assert 0 < size <= solo.supervisor.config.logs.service_bytes
            assert len(list(where.iterdir())) <= solo.supervisor.config.logs.segments + 1
            client.call(name, "say", "still here")  # the service is not blocked by its own flood
            wait_for(has_lines(client, name, "still here", tail=5), timeout=60)
            assert_a_stalled_reader_is_ended(solo, client, name)
        finally:
            client.stop(name, remove=True)


def assert_a_stalled_reader_is_ended(solo, client, name):
    """A reader that takes nothing while lines wait is ended after [logs] slow_consumer_seconds (3 s here), with
    what to do; its follow slot is free again."""
    with grpc.insecure_channel(solo.address, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        stream = solo_pb2_grpc.GatewayStub(channel).Logs(pb.LogsRequest(name=name, follow=True),
                                                         metadata=client.metadata)
        next(stream)
        time.sleep(8)  # 256 KiB of lines are kept: more than the stream's flow-control window
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:
                pass
    assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "did not keep up" in ended.value.details()


def test_bad_input_is_invalid_argument(alice, talker):
    for options, words in [({"since_seconds": -1.0}, "since_seconds"), ({"since_seconds": float("nan")}, "since"),
                           ({"since_seconds": 1e12}, "ten years"), ({"tail": 200_000}, "tail")]:
        with pytest.raises(InvalidRequest, match=words):
            list(alice.logs(talker, **options))
    with pytest.raises(InvalidRequest, match="invalid service name"):
        list(alice.logs("../etc"))


def test_a_token_without_the_logs_right_is_refused(solo, operator, alice, talker):
    with SoloClient(solo.address, operator.mint_token("alice", rights=["invoke", "discover"])) as client:
        with pytest.raises(PermissionDenied):
            list(client.logs(talker))


def test_follows_are_bounded_per_tenant(solo, operator, alice, talker):
    from solo import Overloaded

    allowed = solo.supervisor.config.logs.followers_per_tenant
    streams = [alice.logs(talker, follow=True) for _ in range(allowed)]
    firsts = [next(s) for s in streams]  # each is open and has its first line
    assert firsts
    with pytest.raises(Overloaded, match="followers_per_tenant"):
        next(alice.logs(talker, follow=True))
    for stream in streams:
        stream.close()
    wait_for(lambda: next(alice.logs(talker, follow=True)), tolerate=(Overloaded,))


def test_solo_logs_on_the_command_line(solo, alice, talker, capsys, monkeypatch):
    alice.call(talker, "say", "from the cli")
    wait_for(has_lines(alice, talker, "from the cli"))
    monkeypatch.setenv("SOLO_ADDRESS", solo.address)
    monkeypatch.setenv("SOLO_TOKEN", alice.token)
    assert cli_main(["logs", talker, "--tail", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[-1]["text"] == "from the cli" and rows[-1]["stream"] == "stdout" and len(rows) <= 3
    assert set(rows[-1]) == {"time", "stream", "version", "text"}
    assert cli_main(["logs", talker, "--since", "10m"]) == 0
    human = capsys.readouterr().out
    assert "stdout" in human and "from the cli" in human and "booting" in human
    assert cli_main(["logs", "nope-not-here"]) != 0
    assert "not found" in capsys.readouterr().err


def test_a_swap_tags_each_version_and_says_so(alice, talker):
    alice.call(talker, "say", "from one")
    alice.swap(talker, TALKER.replace('print(text,', 'print("v2:", text,'), version="2", watch_seconds=0)
    alice.call(talker, "say", "from two")
    wait_for(has_lines(alice, talker, "v2: from two"))
    lines = list(alice.logs(talker))
    by_text = {ln["text"]: ln["version"] for ln in lines}
    assert by_text["from one"] == "1" and by_text["v2: from two"] == "2"
    assert any(ln["stream"] == "solo" and ln["text"].startswith("swapped to version 2") for ln in lines)


def test_only_the_ticket_of_a_hosts_own_service_files_its_lines(solo, alice, talker):
    """What a host sends is filed under the service its ticket names: a host of one service (and the cell behind
    it) cannot write into another's log, and a made-up ticket is refused."""
    import hashlib
    import hmac

    import ray

    from solo.errors import PermissionDenied as Denied
    from solo.runtime.launcher import REGISTRY_NAME

    name = f"{talker}-b"  # another service of the same tenant
    alice.deploy(TALKER, name)
    try:
        registry = ray.get_actor(REGISTRY_NAME, namespace=solo.supervisor.config.namespace)
        secret = bytes.fromhex((solo.supervisor.config.data_dir / "registry.secret").read_text().strip())

        def ticket(service: str, host: str) -> str:
            return hmac.new(secret, f"alice\0{service}\0{host}".encode(), hashlib.sha256).hexdigest()

        line = [[time.time(), "stdout", "1", "sent by a host of the talker"]]
        for service, forged in [(name, ticket(talker, "host-x")), (name, "0" * 64)]:
            with pytest.raises(ray.exceptions.RayTaskError) as refused:
                ray.get(registry.append_logs.remote("alice", service, "host-x", forged, line))
            assert isinstance(refused.value.cause, Denied)
        assert "sent by a host of the talker" not in texts(alice, name)
        odd = [[time.time(), "solo", "1", "a host's own note"], [time.time(), "bogus", "1", "no such stream"],
               ["not a time", "stderr", "9" * 500, "kept, stamped now"], "not a line"]
        answer = ray.get(registry.append_logs.remote("alice", talker, "host-x", ticket(talker, "host-x"), odd))
        assert answer["kept"] == 2 and 0.5 <= answer["pause"] <= 5
        kept = wait_for(lambda: [ln for ln in alice.logs(talker) if ln["text"] == "kept, stamped now"])
        assert kept[0]["stream"] == "stderr" and len(kept[0]["version"]) == 64 and abs(kept[0]["time"] - time.time()) < 60
        assert "no such stream" not in [ln["text"] for ln in alice.logs(talker)]
    finally:
        alice.stop(name, remove=True)


def test_what_a_service_printed_before_its_start_failed_is_kept(alice, name):
    broken = source("""
        class Broken:
            def __init__(self):
                print("connecting to the database", flush=True)
                raise RuntimeError("no database")
    """)
    with pytest.raises(Exception, match="no database"):  # noqa: B017 - the deploy fails with the service's error
        alice.deploy(broken, name)
    try:
        wait_for(has_lines(alice, name, "connecting to the database"))
        notes = [ln["text"] for ln in alice.logs(name) if ln["stream"] == "solo"]
        assert any(n.startswith("failed:") and "no database" in n for n in notes)
    finally:
        alice.stop(name, remove=True)


def test_logs_and_a_follow_outlive_a_registry_restart(solo, alice, talker):
    import ray

    from solo.runtime.launcher import REGISTRY_NAME

    alice.call(talker, "say", "before the registry restart")
    wait_for(has_lines(alice, talker, "before the registry restart"))
    seen: list = []
    call = alice.stub.Logs(pb.LogsRequest(name=talker, follow=True, tail=1), metadata=alice.metadata)

    def read():
        try:
            for line in call:
                seen.append(line.text)
        except grpc.RpcError as exc:
            seen.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: seen)
    ray.kill(ray.get_actor(REGISTRY_NAME, namespace=solo.supervisor.config.namespace), no_restart=False)
    wait_for(lambda: alice.get(talker)["state"] == "RUNNING", timeout=60, tolerate=(Unavailable,))
    alice.call(talker, "say", "after the registry restart")  # the host sends to the new registry
    wait_for(lambda: "after the registry restart" in seen, timeout=60)
    call.cancel()
    reader.join(10)
    kept = texts(alice, talker)
    assert kept.index("before the registry restart") < kept.index("after the registry restart")


def test_a_service_ended_for_its_memory_limit_keeps_its_output_and_says_why(alice, name):
    hog = source("""
        class Hog:
            def leak(self):
                chunks = []
                print("allocating", flush=True)
                import time; time.sleep(1.5)  # sent before the limit acts: a host the kernel kills sends nothing more
                while True:
                    chunks.append(bytearray(b"\\x01") * (10 << 20))
                    import time; time.sleep(0.05)
    """)
    alice.deploy(hog, name, memory=100 << 20, max_restarts=0)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the call ends with the host
            alice.call(name, "leak", _timeout=60)
        wait_for(has_lines(alice, name, "allocating"), timeout=60)
        notes = wait_for(lambda: [ln["text"] for ln in alice.logs(name) if ln["stream"] == "solo"
                                  and ln["text"].startswith("went over its memory limit")], timeout=60)
        assert notes
    finally:
        alice.stop(name, remove=True)
