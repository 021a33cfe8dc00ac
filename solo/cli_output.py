"""Human output and argument parsing helpers for the CLI."""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from datetime import datetime, timezone

from solo.errors import InvalidRequest

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "t": 1000**4, "tb": 1000**4}


def client(args):
    """A SoloClient from the common flags (address, token, data dir, TLS files)."""
    from solo.client import SoloClient
    return SoloClient(args.address, args.token, data_dir=args.data_dir, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                      tls_key=args.tls_key)


def emit(args, value, human) -> None:
    """`--json`: the value as JSON; otherwise `human(value)` prints it."""
    if args.json:
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        human(value)


def parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise InvalidRequest(f"cannot read memory size {text!r}; use e.g. 512MiB, 2GB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    pairs = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"{flag} takes KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def parse_duration(text: str, flag: str = "--ttl") -> float:
    """'90s', '10m', '2h', '30d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise InvalidRequest(f"cannot read {flag} {text!r}; use a duration such as 90s, 10m, 2h or 30d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_since(text: str, now: float | None = None) -> float:
    """'30s', '10m', '2h', '1d' ago, or an ISO time (UTC unless it says otherwise) -> unix seconds."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        return now - float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"cannot read --since {text!r}; use an age (30s, 10m, 2h, 1d) or an ISO time") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def print_table(rows: list[dict], columns: list[tuple[str, str]], empty: str = "") -> None:
    if not rows:
        if empty:
            print(empty)
        return
    cells = [[str(row.get(key, "")) for _, key in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _) in enumerate(columns)]
    print("  ".join(t.ljust(w) for (t, _), w in zip(columns, widths)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


def print_service(info: dict) -> None:
    res, stats = info.get("resources", {}), info.get("stats", {})
    resources = f"cpus={res.get('num_cpus', 0):g}"
    if res.get("num_gpus"):
        resources += f" gpus={res['num_gpus']:g}"
    if int(res.get("memory_bytes", 0)):
        resources += f" memory={format_bytes(int(res['memory_bytes']))}"
    for key, value in sorted((res.get("custom") or {}).items()):
        resources += f" {key}={value:g}"
    rows = [
        ("name", info["name"]), ("version", info["version"]), ("state", info["state"]),
        ("class", f"{info.get('class_name', '')} ({info.get('filename', '')})"),
        ("node", f"{info.get('node_ip', '')} {info.get('node_id', '')[:12]}".strip() or "-"),
        ("pid", info.get("pid") or "-"), ("restarts", info.get("restarts", 0)), ("resources", resources),
        ("enforced", info.get("limits") or "-"),
        ("calls", stats.get("calls", 0)), ("errors", stats.get("errors", 0)),
        ("in flight", stats.get("in_flight", 0)),
        ("memory (rss)", format_bytes(int(stats.get("rss_bytes", 0))) if int(stats.get("rss_bytes", 0)) else "-"),
        ("cpu time", f"{float(stats.get('cpu_seconds', 0)):.2f}s"),
        ("uptime", format_duration(float(info.get("uptime_seconds", 0))) if info.get("uptime_seconds") else "-"),
        ("methods", ", ".join(info.get("methods", [])) or "-"),
    ]
    if info.get("labels"):
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(info["labels"].items()))))
    if info.get("message"):
        rows.append(("message", info["message"]))
    for key, value in rows:
        print(f"{key + ':':<14}{value}")


class Progress:
    """Shows that a slow command is working: a ticking line on a terminal, one line otherwise."""

    def __init__(self, what: str, enabled: bool = True):
        self.what = what
        self.enabled = enabled
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self.tty = sys.stderr.isatty()

    def _tick(self) -> None:
        start = time.monotonic()
        while not self._done.wait(0.1):
            sys.stderr.write(f"\r{self.what}... {time.monotonic() - start:.1f}s")
            sys.stderr.flush()
        sys.stderr.write(f"\r{self.what}... done in {time.monotonic() - start:.1f}s\n")

    def __enter__(self):
        if self.enabled:
            if self.tty:
                self._thread.start()
            else:
                print(f"{self.what}...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
