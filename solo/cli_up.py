"""`solo up` and `solo down`: start Solo in a background process, stop it again."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from solo.config import load_config, loop_factory
from solo.errors import FailedPrecondition, Unavailable

EXAMPLE = Path(__file__).parent / "examples" / "echo.py"


def _state(data_dir: Path) -> dict | None:
    path = data_dir / "solo.json"
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not _alive(state["pid"]):
        path.unlink(missing_ok=True)  # left behind by a Solo that died
        return None
    return state


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed Solo whose parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc here: trust kill(0)


def _overrides(args) -> dict:
    """The flags of `solo up` as load_config overrides (they win over the file, at start and at every reload)."""
    mutual = args.require_client_cert  # implies --tls; flags only switch on (None: keep the config file's)
    return dict(data_dir=args.data_dir, gateway__port=args.port, gateway__host=args.host,
                rest__port=getattr(args, "rest_port", None),
                gateway__processes=getattr(args, "gateway_processes", None),
                tls__enabled=True if args.tls or mutual else None, tls__require_client_cert=True if mutual else None)


def _config(args):
    return load_config(args.config, **_overrides(args))


def _print_ready(state: dict, data_dir: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**state, "data_dir": str(data_dir)}, indent=2))
        return
    processes = state.get("gateway_processes", 1)
    print(f"Solo is up.\n"
          f"  gateway:         {state['address']}"
          + (f" ({processes} processes, pids {', '.join(map(str, state.get('gateway_pids', [])))})"
             if processes > 1 else "") + "\n"
          + (f"  rest:            {state['rest_url']}  (OpenAPI: /openapi.json)\n" if state.get("rest_url") else "")
          + f"  operator token:  {state['operator_token_file']}\n"
          f"  data directory:  {data_dir}\n"
          f"  ray:             {'embedded (started by Solo)' if state['embedded'] else state['ray_address']}")
    if state.get("sandbox"):
        print(f"  sandbox:         {state['sandbox']}")
    if state.get("tls_ca"):
        print(f"  tls:             on, CA {state['tls_ca']}"
              + ("; client certificates required (`solo certs issue NAME`)" if state.get("client_cert_required")
                 else ""))
    if state.get("example"):
        print(f"  example service: {state['example']}   try: solo call echo echo '\"hello\"'")
    print("Stop it with: solo down")


def up(args) -> int:
    config = _config(args)
    running = _state(config.data_dir)
    if running is not None:
        print(f"Solo already runs here (pid {running['pid']}).", file=sys.stderr)
        _print_ready(running, config.data_dir, args.json)
        return 0
    if args.foreground:
        return run_foreground(args, config)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.data_dir / "solo.log"
    argv = [sys.executable, "-m", "solo.cli", "up", "--foreground", "--data-dir", str(config.data_dir)]
    for flag, value in (("--port", args.port), ("--host", args.host), ("--config", args.config),
                        ("--address", args.ray_address), ("--num-cpus", args.num_cpus),
                        ("--gateway-processes", args.gateway_processes), ("--rest-port", args.rest_port)):
        if value is not None:
            argv += [flag, str(value)]
    for flag, on in (("--no-example", args.no_example), ("--tls", args.tls),
                     ("--require-client-cert", args.require_client_cert)):
        if on:
            argv.append(flag)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    print(f"starting Solo (log: {log_path})...", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = _state(config.data_dir)
        if state is not None and state["pid"] == child.pid:
            _print_ready(state, config.data_dir, args.json)
            return 0
        if child.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise FailedPrecondition("Solo failed to start:\n  " + "\n  ".join(tail))
        time.sleep(0.2)
    child.terminate()
    raise Unavailable(f"Solo did not come up within 180s; see {log_path}")


LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray reads it at import: "0" keeps Ray on 127.0.0.1


def ensure_local_node_certificate(config) -> bool:
    """[tls] hosts on one machine: its own node certificate, made on first use like the gateway's (True when
    made). With `node_dir` set (a cluster), every node gets its certificate from `solo certs node` instead."""
    if config.tls.hosts == "off" or config.tls.node_dir is not None or (config.node_tls_dir / "node.crt").exists():
        return False
    from solo.security.certs import init_ca, issue_node
    if not (config.tls_dir / "ca.crt").exists():
        init_ca(config.tls_dir)
    elif not (config.tls_dir / "ca.key").exists():
        raise FailedPrecondition(f"[tls] hosts needs a node certificate in {config.node_tls_dir}, and the CA's key is "
                                 f"not in {config.tls_dir} to make one: run `solo certs node NAME --out "
                                 f"{config.node_tls_dir}` where the CA's key is")
    issue_node(config.tls_dir, "local", ["localhost"], out=config.node_tls_dir)
    return True


def run_foreground(args, config) -> int:
    if not args.ray_address:
        os.environ.setdefault(LOOPBACK_ONLY, "0")  # embedded: nothing of Ray's listens beyond loopback
    from solo.runtime.supervisor import Supervisor

    if config.tls.enabled and not (config.tls_dir / "server.crt").exists():
        from solo.security.certs import init_ca, issue_server
        if not (config.tls_dir / "ca.key").exists():
            init_ca(config.tls_dir)
        issue_server(config.tls_dir, [config.gateway.host])
        print(f"created a CA and the gateway's certificate in {config.tls_dir}", flush=True)
    if ensure_local_node_certificate(config):
        print(f"created this machine's node certificate in {config.node_tls_dir}", flush=True)
    if config.tls.require_client_cert and not (config.tls_dir / "clients" / "operator.crt").exists():
        from solo.security.certs import issue_client
        issue_client(config.tls_dir, "operator", days=365)  # so the CLI on this machine can connect
    from solo.config_reload import ConfigSource
    supervisor = Supervisor(config, args.ray_address, args.num_cpus,
                            source=ConfigSource.of(args.config, config.data_dir, **_overrides(args)))
    supervisor.prepare()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await supervisor.serve()
        example = ""
        if not args.no_example:
            example = await supervisor.deploy_example(EXAMPLE)
        path = supervisor.write_state()
        state = {**json.loads(path.read_text()), "example": example}
        path.write_text(json.dumps(state, indent=1))
        _print_ready(state, config.data_dir, False)
        sys.stdout.flush()
        await stop.wait()
        print("stopping Solo...", flush=True)
        await supervisor.shutdown(stop_services=True)

    with asyncio.Runner(loop_factory=loop_factory(config.gateway.event_loop)) as runner:
        runner.run(main())
    return 0


def down(args) -> int:
    config = load_config(None, data_dir=args.data_dir)
    state = _state(config.data_dir)
    if state is None:
        print(f"Solo is not running (no live {config.data_dir / 'solo.json'}).", file=sys.stderr)
        return 0
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not _alive(state["pid"]):
            print(f"Solo stopped. Events are kept in {config.data_dir / 'events'}.")
            return 0
        time.sleep(0.2)
    os.kill(state["pid"], signal.SIGKILL)
    print("Solo did not stop within 90s and was killed.", file=sys.stderr)
    return 1
