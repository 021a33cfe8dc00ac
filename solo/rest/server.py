"""The REST gateway's HTTP server: uvicorn on the gateway's own event loop, beside the gRPC server.

It serves on the loop the gRPC handlers run on (a task, no thread), with the gateway's certificate when
[tls] enabled (and the client certificate asked for and read when require_client_cert), a cap on
connections and requests at once, and no signal handlers of its own (Solo's process owns its signals).
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from solo.config import SoloConfig
from solo.errors import FailedPrecondition

DEFAULT_PORT = 7080
TLS_EXTENSION = "solo.tls"
TRANSPORT_EXTENSION = "solo.transport"  # the connection's transport: a stalled stream's writer aborts it
HEAD_SECONDS = 10.0     # a request's line and headers arrive within this, or the connection is closed
HEAD_BYTES = 64 * 1024  # the most a request's line and headers may take


def rest_address(config: SoloConfig) -> tuple[str, int] | None:
    """(host, port) REST listens on, None when off: [rest] port unset means 7080, or any free port when the
    gRPC port is 0 (tests, several Solos on one machine)."""
    rest = config.rest
    port = rest.port if rest.port is not None else (0 if config.gateway.port == 0 else DEFAULT_PORT)
    if port < 0:
        return None
    return rest.host or config.gateway.host, port


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol (it bounds a request's line and headers to HEAD_BYTES; httptools does not) with:
    - a deadline for each request's line and headers (HEAD_SECONDS from the connection or from the first byte
      after the previous answer): uvicorn has none, and connections that never finish a request would hold
      [rest] max_connections;
    - the verified client certificate's names handed to the app the way gRPC's auth_context gives them
      (x509_subject_alternative_name), so a certificate bound to a tenant binds REST calls too;
    - the transport handed to the app, so a stream whose client stopped reading can drop its connection."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = None
        self._head_cycle = None
        self._arm()
        extensions = {TRANSPORT_EXTENSION: transport}
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert() if ssl_object is not None else None
        if certificate:
            names = [value for _, value in certificate.get("subjectAltName", ())]
            extensions[TLS_EXTENSION] = {"x509_subject_alternative_name": names}
        app = self.app

        async def with_connection(scope, receive, send):
            scope = {**scope, "extensions": {**scope.get("extensions", {}), **extensions}}
            await app(scope, receive, send)
        self.app = with_connection

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:  # these bytes start (or continue) a request's head
            self._arm()
        super().data_received(data)

    def connection_lost(self, exc) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is not None and self._head_cycle is self.cycle:
            return  # this head's deadline runs already
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self.cycle is self._head_cycle and not self.transport.is_closing():
            self.transport.close()  # no new request began within HEAD_SECONDS


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # Solo's process handles SIGINT/SIGTERM itself


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"the REST gateway cannot listen on {host}:{port} ({exc.strerror}); pick another "
                                 "[rest] port (0 = any free port, -1 = no REST) or [rest] host") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class RestServer:
    def __init__(self, app, config: SoloConfig, host: str, port: int):
        self.sock = _socket(host, port)
        tls = {}
        if config.tls.enabled:
            directory = config.tls_dir
            tls = {"ssl_certfile": str(directory / "server.crt"), "ssl_keyfile": str(directory / "server.key"),
                   "ssl_ca_certs": str(directory / "ca.crt"),
                   "ssl_cert_reqs": ssl.CERT_REQUIRED if config.tls.require_client_cert else ssl.CERT_NONE}
        self.server = _Server(uvicorn.Config(
            app, http=_Protocol, h11_max_incomplete_event_size=HEAD_BYTES, lifespan="off", log_config=None,
            access_log=False, server_header=False, proxy_headers=False, limit_concurrency=config.rest.max_connections,
            timeout_keep_alive=5, timeout_graceful_shutdown=2, **tls))
        self.task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @property
    def url(self) -> str:
        """Where clients reach it (a wildcard address is shown as 127.0.0.1)."""
        host = self.sock.getsockname()[0]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        scheme = "https" if self.server.config.is_ssl else "http"
        return f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise FailedPrecondition("the REST gateway stopped while starting; see the gateway log")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.task is None:
            self.sock.close()
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()
        except Exception:  # noqa: BLE001 - stopping: nothing to report to
            pass
        self.sock.close()


def rest_server(config: SoloConfig, servicer, group=None, health=None) -> RestServer | None:
    """The REST gateway over `servicer`, bound (not serving yet: start() it); None when [rest] port is -1, and
    in every gateway process but process 0 (REST is not on SO_REUSEPORT: its port has one owner). `health` (a
    gateway.health.Health) answers its /health and /ready."""
    where = rest_address(config)
    if where is None or (group is not None and group.index != 0):
        return None
    from solo.rest.app import build_app  # FastAPI is imported only where REST is served
    return RestServer(build_app(servicer, config.rest.max_body_bytes, health, config.rest.max_body_bytes_in_flight,
                                config.rest.write_timeout_seconds), config, *where)
