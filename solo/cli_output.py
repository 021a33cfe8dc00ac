"""Human output and argument parsing helpers for the CLI."""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
from datetime import UTC, datetime

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
    size = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(size) or size >= 2**64:
        raise InvalidRequest(f"memory size {text!r} is too large; use e.g. 512MiB or 2GB")
    return int(size)


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


def parse_json(text: str, flag: str, example: str) -> object:
    """A JSON argument of the CLI; InvalidRequest saying what is wrong with it and an example."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidRequest(f"{flag}: JSON nested too deeply; flatten it, e.g. {example}") from None
    except ValueError as exc:
        raise InvalidRequest(f"{flag}: not valid JSON ({exc}); e.g. {example}") from None


def parse_amounts(items: list[str] | None, flag: str) -> dict[str, float]:
    """NAME=AMOUNT pairs with a finite number >= 0 as the amount."""
    amounts = {}
    for key, value in parse_pairs(items, flag).items():
        try:
            amount = float(value)
        except ValueError:
            amount = math.nan
        if not math.isfinite(amount) or amount < 0:
            raise InvalidRequest(f"{flag} takes NAME=AMOUNT with a number >= 0 as the amount, got {key}={value!r}; "
                                 "e.g. gpu_slot=1 or accelerator_x=0.5")
        amounts[key] = amount
    return amounts


def int_arg(low: int, high: int):
    """An argparse type: an integer from low to high (a bad one is a usage error, exit code 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give one from {low} to {high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; give a whole number from {low} to {high}")
        return value
    return parse


def float_arg(low: float, high: float = math.inf):
    """An argparse type: a finite number from low to high."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not low <= value <= high:
            limit = f"from {low:g} to {high:g}" if math.isfinite(high) else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not a number {limit}")
        return value
    return parse


def parse_duration(text: str, flag: str = "--ttl") -> float:
    """'90s', '10m', '2h', '30d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise InvalidRequest(f"cannot read {flag} {text!r}; use a duration such as 90s, 10m, 2h or 30d")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds > 100 * 365 * 86400:
        raise InvalidRequest(f"{flag} {text!r} is longer than 100 years; use a duration such as 90s, 10m, 2h or 30d")
    return seconds


def parse_since(text: str, now: float | None = None) -> float:
    """'30s', '10m', '2h', '1d' ago, or an ISO time (UTC unless it says otherwise) -> unix seconds."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        age = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        if age > now + 1:
            raise InvalidRequest(f"--since {text!r} reaches back before 1970; use a smaller age (30s, 10m, 2h, 1d) "
                                 "or an ISO time")
        return now - age
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"cannot read --since {text!r}; use an age (30s, 10m, 2h, 1d) or an ISO time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


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
