"""The attack suite: tenant code in a cell must not reach Solo, Ray, the data directory, other
processes, other tenants or the network, and its resource attacks stay inside its limits.

Every attack is made from inside a deployed service (the `Spy` below), which reports what happened
as data ({"ok": False, "error": ...}); the test asserts it failed. Where cheap, the test first
checks that the same attempt succeeds from the test process itself (outside the sandbox), so each
assertion is about the sandbox, not about a target that was never there.
"""
from __future__ import annotations

import errno
import glob
import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from solo import SoloError
from tests.conftest import EXAMPLES, source

SPY = source('''
    import ctypes
    import errno
    import json
    import os
    import resource
    import signal
    import socket
    import subprocess
    import sys
    import time

    import solo


    def attempt(fn):
        """Run one attack: {"ok": True, "value": ...} when it worked, else the error it met."""
        try:
            return {"ok": True, "value": fn()}
        except BaseException as exc:  # noqa: BLE001 - the attack's outcome is the answer
            return {"ok": False, "type": type(exc).__name__, "errno": getattr(exc, "errno", None),
                    "error": f"{type(exc).__name__}: {exc}"[:400]}


    def read_head(path):
        with open(path, "rb") as f:
            return f.read(64).decode("latin-1")


    def write_file(path):
        with open(path, "w") as f:
            f.write("pwned by a tenant")
        return path


    def libc_call(name, *args):
        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, name)
        fn.restype = ctypes.c_long
        result = fn(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
        err = ctypes.get_errno()
        if result == -1:
            raise OSError(err, f"{name}: {os.strerror(err)}")
        return result


    # run in a child process of the cell, so a Ray that hangs or aborts cannot take the service with it
    RAY_ATTACK = """
    import json, sys
    gcs, namespace = sys.argv[1], sys.argv[2]

    def emit(step, **fields):
        print(json.dumps({"step": step, **fields}), flush=True)

    def attempt(step, fn):
        try:
            emit(step, ok=True, value=repr(fn())[:400])
        except BaseException as exc:
            emit(step, ok=False, error=f"{type(exc).__name__}: {exc}"[:400])

    import ray
    attempt("unconnected.list_named_actors", lambda: ray.util.list_named_actors(all_namespaces=True))
    attempt("unconnected.get_actor", lambda: ray.get_actor("solo-events", namespace=namespace))
    for step, address in (("auto", "auto"), ("gcs", gcs)):
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False)
        except BaseException as exc:
            emit(step, ok=False, error=f"{type(exc).__name__}: {exc}"[:400])
            continue
        emit(step, ok=True, value="connected")
        attempt(step + ".list_named_actors", lambda: ray.util.list_named_actors(all_namespaces=True))
        attempt(step + ".get_actor", lambda: ray.get_actor("solo-events", namespace=namespace))
        ray.shutdown()
    """


    class Spy:
        # -- files ---------------------------------------------------------------------------------
        def read(self, paths):
            return {p: attempt(lambda p=p: read_head(p)) for p in paths}

        def listdir(self, paths):
            return {p: attempt(lambda p=p: sorted(os.listdir(p))) for p in paths}

        def write(self, paths):
            return {p: attempt(lambda p=p: write_file(p)) for p in paths}

        def scratch_put(self, filename, text):
            with open(os.path.join("/tmp", filename), "w") as f:
                f.write(text)
            return sorted(os.listdir("/tmp"))

        def scratch_get(self, filename):
            return attempt(lambda: read_head(os.path.join("/tmp", filename)))

        def fill(self, directory, mebibytes):
            """Write up to `mebibytes` MiB into `directory`; how much fitted, then free it again."""
            path, written, error = os.path.join(directory, "fill.bin"), 0, None
            chunk = b"\\x01" * (1 << 20)
            try:
                with open(path, "wb") as f:
                    for _ in range(mebibytes):
                        f.write(chunk)
                        f.flush()
                        written += 1
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
            finally:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return {"mebibytes": written, "error": error}

        # -- processes -----------------------------------------------------------------------------
        def processes(self):
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            return {"pids": pids, "me": os.getpid()}

        def peek(self, pids):
            """Everything a service might try on another process."""
            out = {}
            for pid in pids:
                out[str(pid)] = {
                    "exists": os.path.exists(f"/proc/{pid}"),
                    "environ": attempt(lambda: read_head(f"/proc/{pid}/environ")),
                    "cmdline": attempt(lambda: read_head(f"/proc/{pid}/cmdline")),
                    "signal0": attempt(lambda: os.kill(pid, 0)),
                    "sigcont": attempt(lambda: os.kill(pid, signal.SIGCONT)),
                    "ptrace_attach": attempt(lambda: libc_call("ptrace", 16, pid, 0, 0)),  # PTRACE_ATTACH
                    "pidfd_open": attempt(lambda: os.close(os.pidfd_open(pid))),
                }
            return out

        def ptrace_self(self):
            return {"traceme": attempt(lambda: libc_call("ptrace", 0, 0, 0, 0)),  # PTRACE_TRACEME
                    "attach_init": attempt(lambda: libc_call("ptrace", 16, 1, 0, 0)),
                    "unshare_user": attempt(lambda: libc_call("unshare", 0x10000000)),  # CLONE_NEWUSER
                    "mount_cgroup": attempt(lambda: libc_call("mount", ctypes.c_char_p(b"cgroup"),
                                                              ctypes.c_char_p(b"/tmp"), ctypes.c_char_p(b"cgroup"),
                                                              0, ctypes.c_char_p(b"pids")))}

        def environment(self):
            return {"env": dict(os.environ), "self_environ": read_head("/proc/self/environ"),
                    "init_environ": attempt(lambda: open("/proc/1/environ", "rb").read().decode("latin-1"))}

        def reopen(self, paths):
            """Open a path read-write (a /proc/self/fd/N magic link reaches the file it names, wherever it is)."""
            def head(path):
                with open(path, "r+b") as f:
                    return f.read(64).decode("latin-1")
            return {p: attempt(lambda p=p: head(p)) for p in paths}

        def descriptors(self):
            out = {}
            for fd in os.listdir("/proc/self/fd"):
                try:
                    out[fd] = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    pass
            return out

        # -- network -------------------------------------------------------------------------------
        def connect(self, targets):
            def tcp(host, port):
                with socket.create_connection((host, port), timeout=3):
                    return "connected"
            return {f"{h}:{p}": attempt(lambda h=h, p=p: tcp(h, p)) for h, p in targets}

        def unix_connect(self, paths):
            def unix(path):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(3)
                    s.connect(path)
                    return "connected"
            return {p: attempt(lambda p=p: unix(p)) for p in paths}

        def interfaces(self):
            return [name for _, name in socket.if_nameindex()]

        def resolve(self, name):
            return attempt(lambda: socket.getaddrinfo(name, 443)[0][4][0])

        def raw_egress(self, host, port):
            """Skip the wrapped socket functions: write an egress request straight to the host's channel."""
            channel = socket.socket(fileno=os.dup(int(sys.argv[3])))
            try:
                channel.settimeout(10)
                channel.sendall(json.dumps({"host": host, "port": port}).encode())
                data, fds, _, _ = socket.recv_fds(channel, 1024, 1)
                for fd in fds:
                    os.close(fd)
                return {"got_socket": bool(fds), "answer": data.decode(errors="replace")}
            finally:
                channel.close()

        # -- Ray -----------------------------------------------------------------------------------
        def ray(self, gcs_address, namespace):
            env = {**os.environ, "RAY_ENABLE_AUTO_CONNECT": "0", "RAY_USAGE_STATS_ENABLED": "0",
                   # fail fast instead of retrying for minutes; a reachable GCS answers in milliseconds
                   "RAY_gcs_rpc_server_connect_timeout_s": "1", "RAY_gcs_server_request_timeout_seconds": "2",
                   "RAY_gcs_rpc_server_reconnect_timeout_s": "2"}
            try:
                done = subprocess.run([sys.executable, "-c", RAY_ATTACK, gcs_address, namespace], env=env,
                                      capture_output=True, text=True, timeout=60)
                out, code, err = done.stdout, done.returncode, done.stderr
            except subprocess.TimeoutExpired as exc:
                out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
                code, err = "timed out", ""
            steps = {}
            for line in out.splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                steps[row.pop("step")] = row
            tail = (err.strip().splitlines() or [""])[-1][:400]
            for step in ("unconnected.list_named_actors", "unconnected.get_actor", "auto", "gcs"):
                steps.setdefault(step, {"ok": False, "error": f"the process ended ({code}) before it answered: {tail}"})
            return steps

        # -- other services ------------------------------------------------------------------------
        def discover(self, target, owner=""):
            return attempt(lambda: solo.discover(target, owner=owner or None).call("echo", "via discover"))

        # -- resources -----------------------------------------------------------------------------
        def fork_bomb(self, limit):
            """Fork up to `limit` children that wait on a pipe; stop at the first refusal, then let them go."""
            r, w = os.pipe()
            children, error = [], None
            try:
                for _ in range(limit):
                    try:
                        pid = os.fork()
                    except OSError as exc:
                        error = f"{type(exc).__name__}: {exc}"
                        break
                    if pid == 0:
                        try:
                            os.close(w)
                            os.read(r, 1)
                        finally:
                            os._exit(0)
                    children.append(pid)
            finally:
                os.close(w)  # every child sees end of file and exits
                os.close(r)
                for pid in children:
                    os.waitpid(pid, 0)
            return {"forked": len(children), "error": error}

        def exhaust_fds(self, limit):
            opened, error = [], None
            try:
                for _ in range(limit):
                    opened.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                error = {"errno": exc.errno, "error": f"{type(exc).__name__}: {exc}"}
            finally:
                for fd in opened:
                    os.close(fd)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            raised = attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 4, hard * 4)))
            return {"opened": len(opened), "error": error, "soft": soft, "hard": hard, "raise": raised}

        def ping(self):
            return "pong"
''')


def _until(predicate, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(every)


def _failed(result: dict) -> bool:
    return isinstance(result, dict) and result.get("ok") is False


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _host_connect(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=3):
        pass


def _links(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed meanwhile
    return found


def _address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _deployed(client, code, kind: str):
    name = _fresh(kind)
    client.deploy(code, name)
    yield name
    client.stop(name, remove=True)


@pytest.fixture(scope="module")
def spy(alice):
    yield from _deployed(alice, SPY, "spy")


@pytest.fixture(scope="module")
def bob_spy(bob):
    yield from _deployed(bob, SPY, "spy")


@pytest.fixture(scope="module")
def neighbour(bob):
    """Another tenant's service: the target of network attacks and the witness of resource attacks."""
    yield from _deployed(bob, EXAMPLES / "echo.py", "echo")


@pytest.fixture(scope="module")
def ray_attack(solo, alice, spy):
    """`import ray` in the cell, then every way in: list and get actors unconnected, ray.init("auto"),
    ray.init(<Solo's real GCS address>) and, had either connected, list and get the actors. Run once (a
    child process of the cell that imports Ray takes a few seconds), read by the tests below."""
    import ray

    gcs, namespace = ray.get_runtime_context().gcs_address, solo.supervisor.config.namespace
    steps = alice.call(spy, "ray", gcs, namespace, _timeout=90)
    print("ray from a cell:", json.dumps(steps, indent=1))
    return {"gcs": gcs, "namespace": namespace, "steps": steps}


# -- the data directory ---------------------------------------------------------------------------------
def _ensure_history(alice, data_dir: Path) -> str:
    """A swap whose watch window has ended leaves a past version in <data-dir>/history."""
    name = _fresh("hist")
    alice.deploy(EXAMPLES / "counter.py", name)
    alice.swap(name, EXAMPLES / "counter_v2.py", watch_seconds=0)
    _until(lambda: list((data_dir / "history").rglob("*.json")))
    return name


def test_the_data_directory_is_invisible_and_unwritable(solo, alice, spy):
    data_dir = Path(solo.supervisor.config.data_dir).resolve()
    counter = _ensure_history(alice, data_dir)
    try:
        named = [data_dir / "operator.token", data_dir / "registry.secret", data_dir / "control.secret"]
        everything = sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        files = list(dict.fromkeys(str(p) for p in [*named, *everything] if p.is_file()))[:400]
        for required in ("operator.token", "registry.secret", "keys/", "specs/", "events/", "history/"):
            assert any(required in f[len(str(data_dir)):] for f in files), f"no {required} in the data directory"
        for path in files:  # each is readable from outside the sandbox: the attack has a real target
            Path(path).read_bytes()
        assert solo.operator_token in Path(data_dir / "operator.token").read_text()

        read = alice.call(spy, "read", files)
        leaked = {p: r for p, r in read.items() if not _failed(r)}
        assert not leaked, f"a service read Solo's files: {leaked}"
        directories = [str(data_dir), *(str(data_dir / d) for d in ("keys", "specs", "events", "history")),
                       str(data_dir.parent)]
        listed = alice.call(spy, "listdir", directories)
        assert not {p: r for p, r in listed.items() if not _failed(r)}, listed
        assert all(r["type"] == "FileNotFoundError" for r in listed.values()), listed  # not there at all

        marker = _fresh("pwned")
        targets = [str(data_dir / marker), str(data_dir / "events" / marker),
                   str(data_dir / "specs" / f"{marker}.json"), str(data_dir / "keys" / marker),
                   str(data_dir / "operator.token")]
        written = alice.call(spy, "write", targets)
        assert not {p: r for p, r in written.items() if not _failed(r)}, written
        assert not list(data_dir.rglob(f"{marker}*")), "a service wrote into the data directory"
        assert solo.operator_token in (data_dir / "operator.token").read_text()
    finally:
        alice.stop(counter, remove=True)


# -- Ray -------------------------------------------------------------------------------------------------
def test_ray_is_out_of_reach(solo, alice, spy, ray_attack):
    import ray

    gcs, namespace, steps = ray_attack["gcs"], ray_attack["namespace"], ray_attack["steps"]
    _host_connect(*_address(gcs))  # Solo's GCS is up and reachable from outside the cell
    assert ray.get_actor("solo-events", namespace=namespace)  # what a cell would want to reach
    for step in ("unconnected.list_named_actors", "unconnected.get_actor", "auto", "gcs"):
        assert _failed(steps[step]), (step, steps[step])
    assert not any(r.get("ok") for r in steps.values()), steps  # no connected step listed or got anything

    # the GCS port and the raylet's sockets directly
    node = ray._private.worker._global_node
    sockets = [node.raylet_socket_name, node.plasma_store_socket_name,
               *glob.glob(os.path.join(node.get_session_dir_path(), "sockets", "*"))]
    sockets = sorted({s for s in sockets if os.path.exists(s)})
    assert node.raylet_socket_name in sockets
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(node.raylet_socket_name)  # reachable from outside
    tcp = alice.call(spy, "connect", [list(_address(gcs))])
    assert all(_failed(r) for r in tcp.values()), tcp
    unix = alice.call(spy, "unix_connect", sockets)
    # no such path in the cell, and no connect(2) at all (seccomp): either way nothing is reached
    assert all(_failed(r) and r["type"] in ("FileNotFoundError", "PermissionError") for r in unix.values()), unix
    listed = alice.call(spy, "listdir", ["/tmp/ray", node.get_session_dir_path()])
    assert all(_failed(r) for r in listed.values()), listed


def test_the_environment_holds_no_ray_variables_and_no_secret(solo, alice, operator, spy):
    seen = alice.call(spy, "environment")
    env = seen["env"]
    assert not [k for k in env if k.upper().startswith("RAY")], env
    secrets = [solo.operator_token, alice.token, operator.token,
               (Path(solo.supervisor.config.data_dir) / "registry.secret").read_text().strip()]
    everything = json.dumps(seen)
    assert not [s for s in secrets if s and s in everything], "a secret is in the cell's environment"
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "PWD", "LANG", "PYTHONDONTWRITEBYTECODE",
                        "PYTHONUNBUFFERED"}, env
    host_env = Path(f"/proc/{alice.get(spy)['pid']}/environ").read_bytes()
    assert b"RAY_" in host_env, "the cell's host (a Ray worker) has RAY_ variables that could leak"


def test_no_descriptor_of_the_host_reaches_the_cell(solo, alice, spy):
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    data_dir = str(Path(solo.supervisor.config.data_dir).resolve())
    host_pid = alice.get(spy)["pid"]
    assert [t for t in _links(host_pid) if t.startswith(session)], "the host holds no descriptor that could leak"
    fds = alice.call(spy, "descriptors")
    files = [f"/proc/self/fd/{fd}" for fd, target in fds.items() if target.startswith("/") and target != "/dev/null"]
    reopened = alice.call(spy, "reopen", files)
    leaked = {fd: t for fd, t in fds.items() if t.startswith((session, data_dir)) or "/ray/" in t}
    opened = {p: r["value"] for p, r in reopened.items() if not _failed(r)}
    assert not leaked and not opened, (leaked, opened)


# -- processes -------------------------------------------------------------------------------------------
def test_other_processes_are_invisible_and_untouchable(alice, spy):
    me = os.getpid()
    host_pid = alice.get(spy)["pid"]
    os.kill(host_pid, 0)  # the spy's own host is alive (outside the cell)...
    assert Path(f"/proc/{me}/environ").read_bytes()  # ...and the test's environment is readable from outside
    outside = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    assert len(outside) > 20 and me in outside

    seen = alice.call(spy, "processes")
    assert len(seen["pids"]) <= 4 and max(seen["pids"]) < 64, seen  # bwrap's init, the cell, nothing else
    assert me not in seen["pids"] and host_pid not in seen["pids"], seen

    peek = alice.call(spy, "peek", [me, host_pid])
    for pid, found in peek.items():
        assert found["exists"] is False, (pid, found)
        for what in ("environ", "cmdline"):
            assert _failed(found[what]) and found[what]["type"] == "FileNotFoundError", (pid, what, found)
        for what in ("signal0", "sigcont", "pidfd_open"):
            assert _failed(found[what]) and found[what]["type"] == "ProcessLookupError", (pid, what, found)
        assert _failed(found["ptrace_attach"]), (pid, found)

    own = alice.call(spy, "ptrace_self")
    print("ptrace, unshare, mount from a cell:", own)
    for what, outcome in own.items():
        assert _failed(outcome) and outcome["errno"] == errno.EPERM, (what, outcome)


def test_cgroup_files_are_out_of_reach(alice, spy):
    from solo.runtime.cell_process import descendants

    cell_pid = descendants(alice.get(spy)["pid"])[-1]  # the service's own process (the limits hold the cell)
    cgroups = {}
    for line in Path(f"/proc/{cell_pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            cgroups[controller] = path  # "" is the v2 (unified) hierarchy
    files = ["/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/pids/cgroup.procs"]
    before = {}
    for controller, knob in (("pids", "pids.max"), ("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us"),
                             ("", "pids.max"), ("", "memory.max"), ("", "cpu.max")):
        if controller in cgroups:
            path = os.path.join("/sys/fs/cgroup", controller, cgroups[controller].lstrip("/"), knob)
            if os.path.exists(path):
                files.append(path)
                before[path] = Path(path).read_text()
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max"):
        if os.path.exists(path):
            files.append(path)
    if "pids.max" in alice.get(spy)["limits"]:
        assert [p for p in before if p.endswith("pids.max")], before  # the cell's own limit, writable from outside
        host_groups = Path(f"/proc/{alice.get(spy)['pid']}/cgroup").read_text()
        assert cgroups["pids" if "pids" in cgroups else ""] not in host_groups  # the host is not limited with it
    listed = alice.call(spy, "listdir", ["/sys", "/sys/fs/cgroup"])
    assert all(_failed(r) for r in listed.values()), listed
    written = alice.call(spy, "write", files)
    assert all(_failed(r) for r in written.values()), written
    for path, text in before.items():
        assert Path(path).read_text() == text, f"{path} changed"


# -- network ---------------------------------------------------------------------------------------------
def _node_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def test_the_network_is_out_of_reach(solo, alice, bob, spy, neighbour):
    gateway = _address(solo.address)
    route = solo.supervisor.gateway.dispatcher.routes.get("bob", neighbour)
    other = _address(route.address)
    listener = socket.create_server(("0.0.0.0", 0))  # a service of the node on every interface
    try:
        port = listener.getsockname()[1]
        targets = [gateway, other, ("127.0.0.1", port)]
        if (ip := _node_ip()) is not None:
            targets.append((ip, port))
        if (mine := solo.supervisor.gateway.dispatcher.routes.get("alice", spy)) is not None:
            targets.append(_address(mine.address))  # its own host's call port, from inside
        for target in targets:
            _host_connect(*target)  # reachable from outside the cell
        targets.append(("1.1.1.1", 53))
        reached = alice.call(spy, "connect", [list(t) for t in targets])
        print("connections from a cell:", reached)
        assert all(_failed(r) for r in reached.values()), reached
        assert alice.call(spy, "interfaces") == ["lo"]
        assert _failed(alice.call(spy, "resolve", "example.com"))
        # the host's egress channel, spoken to directly: no rule, no socket
        for host, port_ in (gateway, other, ("example.com", 443)):
            answer = alice.call(spy, "raw_egress", host, port_)
            assert answer["got_socket"] is False and "allow_egress" in answer["answer"], answer
    finally:
        listener.close()
    assert bob.call(neighbour, "echo", "still here") == "still here"


def test_an_event_cannot_be_forged_and_no_registry_is_reachable(solo, alice, spy, ray_attack):
    """The event log and the registry are Ray actors: with no Ray, a cell has no handle on either;
    what is left is discovery through its host, which only finds what the tenant may see."""
    import ray

    namespace, steps = ray_attack["namespace"], ray_attack["steps"]
    assert ray.get_actor("solo-events", namespace=namespace)  # they exist, outside the cell
    assert ray.get_actor("solo-registry", namespace=namespace)
    assert _failed(steps["unconnected.get_actor"]) and _failed(steps["gcs"]) and _failed(steps["auto"]), steps
    assert "gcs.get_actor" not in steps and "auto.get_actor" not in steps, steps
    data_dir = Path(solo.supervisor.config.data_dir)
    events = sorted(str(p) for p in (data_dir / "events").rglob("*") if p.is_file())
    assert events  # the log's files are there, outside the cell; inside, they cannot be written
    written = alice.call(spy, "write", events[:20])
    assert all(_failed(r) for r in written.values()), written


# -- tenants ---------------------------------------------------------------------------------------------
def test_scratch_is_private_to_each_cell(alice, bob, spy, bob_spy):
    filename = _fresh("secret") + ".txt"
    assert filename in alice.call(spy, "scratch_put", filename, "alice's secret")
    assert alice.call(spy, "scratch_get", filename)["value"] == "alice's secret"  # it is there, in alice's cell
    theirs = bob.call(bob_spy, "scratch_get", filename)
    assert _failed(theirs) and theirs["type"] == "FileNotFoundError", theirs
    other = _fresh("spy")
    alice.deploy(SPY, other)  # the same tenant's other service has its own scratch too
    try:
        assert _failed(alice.call(other, "scratch_get", filename))
    finally:
        alice.stop(other, remove=True)
    assert not os.path.exists(f"/tmp/{filename}"), "the cell's /tmp is the machine's"


def test_discovery_refuses_another_tenants_service(alice, spy, neighbour):
    refused = alice.call(spy, "discover", neighbour, "bob")  # bob's, never granted to alice
    assert _failed(refused) and refused["type"] == "NotFound", refused
    assert "not found" in refused["error"], refused


def test_discovery_between_two_services_of_one_tenant_works_in_cells(alice, spy):
    mine = _fresh("echo")
    alice.deploy(EXAMPLES / "echo.py", mine)
    try:
        assert alice.call(spy, "discover", mine, _timeout=30) == {"ok": True, "value": "via discover"}
    finally:
        alice.stop(mine, remove=True)


def test_scratch_space_is_capped_everywhere_a_service_can_write(solo, alice, spy):
    cap = solo.supervisor.config.runtime.cell_scratch_bytes >> 20
    tried = cap + 32
    assert alice.call(spy, "fill", "/tmp", tried)["mebibytes"] <= cap  # the capped /tmp holds
    filled = {directory: alice.call(spy, "fill", directory, tried) for directory in ("/", "/dev/shm", "/dev")}
    assert all(f["mebibytes"] <= cap for f in filled.values()), filled


# -- resources -------------------------------------------------------------------------------------------
def test_a_fork_bomb_stops_at_the_pids_limit_and_the_rest_keeps_answering(solo, alice, bob, neighbour):
    from solo.runtime.limits import tasks_for

    name = _fresh("bomb")
    info = alice.deploy(SPY, name, max_concurrency=4)
    try:
        if "pids.max" not in info["limits"]:
            pytest.skip(f"no writable pids cgroup on this machine: {info['limits']}")
        bomb = alice.call(name, "fork_bomb", 2000, _timeout=120)
        print("fork bomb:", bomb, "limits:", info["limits"])
        assert 0 < bomb["forked"] < tasks_for(4) < 2000, bomb
        assert bomb["error"] and "Resource temporarily unavailable" in bomb["error"], bomb
        assert bob.call(neighbour, "echo", "still here") == "still here"
        assert bob.list() is not None  # the gateway answers
        assert alice.call(name, "ping") == "pong"  # the children are gone, the service itself recovers
    finally:
        alice.stop(name, remove=True)


def test_fd_exhaustion_stops_at_the_limit_and_the_service_keeps_answering(solo, alice, bob, neighbour):
    limit = solo.supervisor.config.runtime.cell_max_open_files
    name = _fresh("fds")
    alice.deploy(SPY, name)
    try:
        result = alice.call(name, "exhaust_fds", 100_000)
        print("fd exhaustion:", {k: v for k, v in result.items() if k != "raise"})
        assert result["soft"] == result["hard"] == limit == 1024, result
        assert limit - 64 < result["opened"] < limit, result
        assert result["error"]["errno"] == errno.EMFILE, result
        assert _failed(result["raise"]), result  # the hard limit cannot be raised from inside
        assert alice.call(name, "ping") == "pong"
        assert bob.call(neighbour, "echo", "fine") == "fine"
    finally:
        alice.stop(name, remove=True)


# -- what must keep working inside cells -----------------------------------------------------------------
def test_the_examples_run_in_cells_and_a_swap_carries_state_across_cells(alice):
    names = {stem: _fresh(stem) for stem in ("echo", "counter", "kv", "ticker")}
    try:
        for stem, name in names.items():
            info = alice.deploy(EXAMPLES / f"{stem}.py", name)
            assert "sandbox: bwrap" in info["limits"], info["limits"]
        assert alice.call(names["echo"], "echo", "hello") == "hello"
        assert alice.call(names["echo"], "info")["tenant"] == "alice"
        assert alice.call(names["kv"], "put", "a", "1") is True
        assert alice.call(names["kv"], "get", "a") == "1" and alice.call(names["kv"], "keys") == ["a"]
        assert [t["tick"] for t in alice.stream(names["ticker"], "ticks", 3, 0.01)] == [0, 1, 2]
        assert list(alice.stream(names["ticker"], "countdown", 2)) == [2, 1, "liftoff"]

        counter = names["counter"]
        assert alice.call(counter, "incr", 5) == 5
        before = alice.get(counter)["pid"]
        swapped = alice.swap(counter, EXAMPLES / "counter_v2.py", watch_seconds=0)
        assert swapped["state"] == "handed over" and swapped["service"]["version"] == "2", swapped
        assert alice.get(counter)["pid"] != before  # a new host, a new cell
        assert alice.call(counter, "get") == 5  # the state crossed from one cell to the other
        assert alice.call(counter, "incr") == 6 and alice.call(counter, "history") == [6]
    finally:
        for name in names.values():
            try:
                alice.stop(name, remove=True)
            except SoloError:
                pass
