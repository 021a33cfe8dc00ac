"""The gateway's Prometheus `/metrics` endpoint: loopback by default, and an optional bearer token; beside
it the health probes `/health` (liveness) and `/ready` (readiness), gateway/health.py.

prometheus_client's start_http_server serves anyone who can reach it; the metrics name every tenant
and service, so this small server checks `Authorization: Bearer <token>` first when `[gateway]
metrics_token_file` is set (401 without a token, 403 with a wrong one), and binds `[gateway]
metrics_host` (127.0.0.1 unless the operator says otherwise). `/health` and `/ready` need no token (a
probe has none): their JSON names only which of Solo's own checks failed, in fixed words, never a
tenant, a service or an error's text.
"""
from __future__ import annotations

import hmac
import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from solo import metrics
from solo.errors import FailedPrecondition
from solo.gateway.health import HEALTH_PATHS


def read_token(path: Path | None) -> str:
    """The token in `path` ("" without a path); FailedPrecondition when the file is missing or empty."""
    if path is None:
        return ""
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise FailedPrecondition(f"[gateway] metrics_token_file {path} cannot be read ({exc.strerror})") from None
    if not token:
        raise FailedPrecondition(f"[gateway] metrics_token_file {path} is empty")
    return token


class MetricsServer:
    def __init__(self, host: str, port: int, token: str = "", body=None,
                 summary: Callable[[str], dict] | None = None, health=None):
        """`body` makes the exposition (default: this process's registry; several gateway processes serve
        every process's series from process 0, see gateway/group.py). `summary` (only with a token: the
        internal endpoint of one of several gateway processes) also serves `/summary?tenant=T`, that
        tenant's figures as JSON, so a peer answering GetMetrics needs neither the whole exposition nor a
        text parser. `health` (a gateway.health.Health) also serves /health and /ready, without the token."""
        body = body or (lambda: generate_latest(metrics.REGISTRY))
        expected = f"Bearer {token}".encode()
        if summary is not None and not token:
            raise ValueError("/summary is served only behind a token")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path, _, query = self.path.partition("?")
                if health is not None and path in HEALTH_PATHS:
                    status, answer = health.answer(path)
                    return self._answer(status, json.dumps(answer, sort_keys=True).encode() + b"\n",
                                        {"Content-Type": "application/json", "Cache-Control": "no-store"})
                if path not in ("/metrics", "/") and not (path == "/summary" and summary is not None):
                    return self._answer(404, b"not found; scrape /metrics\n")
                if token:
                    given = self.headers.get("Authorization")
                    if not given:
                        return self._answer(401, b"send 'Authorization: Bearer <token>' ([gateway] "
                                                 b"metrics_token_file)\n", {"WWW-Authenticate": "Bearer"})
                    if not hmac.compare_digest(given.strip().encode(), expected):
                        return self._answer(403, b"wrong metrics token\n")
                if path == "/summary":
                    tenant = urllib.parse.parse_qs(query).get("tenant", [""])[0]
                    if not tenant:
                        return self._answer(400, b"/summary?tenant=<tenant>\n")
                    return self._answer(200, json.dumps(summary(tenant)).encode(),
                                        {"Content-Type": "application/json"})
                self._answer(200, body(), {"Content-Type": CONTENT_TYPE_LATEST})

            def _answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise FailedPrecondition(f"/metrics cannot listen on {host}:{port} ({exc.strerror}); pick another "
                                     "[gateway] metrics_port or metrics_host") from None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="solo-metrics", daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
