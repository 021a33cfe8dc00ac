"""Reading events back to act on them: every field checked before use, a bad row skipped and counted.

Solo acts on some of its events again: the revocation list every gateway loads, the registry's
fold and checkpoint, discovery grants. Only Solo's own components may append (see
solo/security/control.py), but a row is still data, not proof: a forged or damaged row must never
stop a restart. Readers take each field they use through these checks; a row that fails one raises
`BadRow`, and the reader skips it and counts it in a `Skipped`, which logs one warning per read
(at most one a minute for a reader that follows the log), never one line per row.

The checks are about shape (types, ranges, the form of names and ids), not about who wrote a row:
free text (a failure reason) is taken as it is, since a service's own error messages end up there.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from solo.core.spec import NAME_RE

MAX_INT = 2 ** 53          # ids, pids, counts, generations: anything larger is not one of Solo's
MAX_TEXT = 4096            # free text (reasons) is cut to this
HEX64 = re.compile(r"[0-9a-f]{64}")           # a spec fingerprint (sha256)
REVOCATION_ID = re.compile(r"[0-9a-f]{128}")  # a Biscuit block's revocation id (an Ed25519 signature)
PRINTABLE = re.compile(r"[\x21-\x7e]{0,256}")  # host actor names, versions: printable ASCII, no spaces
_MISSING: Any = object()


class BadRow(ValueError):
    """A row (or checkpoint entry) a reader cannot use; the message says why."""


def payload(raw: object) -> dict:
    """The JSON object in a row's payload column (JSON text; a null payload reads as {})."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise BadRow(f"the payload is {type(raw).__name__}, not JSON text")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also digits past Python's int limit, deep nesting
        raise BadRow(f"the payload is not JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise BadRow(f"the payload is a JSON {type(value).__name__}, not an object")
    return value


def _get(p: dict, key: str, default):
    if key in p and p[key] is not None:
        return p[key]
    if default is _MISSING:
        raise BadRow(f"{key!r} is missing")
    return default


def text(p: dict, key: str, default: Any = _MISSING, pattern: re.Pattern | None = None) -> str:
    value = _get(p, key, default)
    if not isinstance(value, str):
        raise BadRow(f"{key!r} is {type(value).__name__}, not text")
    if pattern is not None and value != default and not pattern.fullmatch(value):
        raise BadRow(f"{key!r} is not in the expected form ({value[:40]!r})")
    return value[:MAX_TEXT]


def integer(p: dict, key: str, default: Any = _MISSING, high: int = MAX_INT) -> int:
    value = _get(p, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise BadRow(f"{key!r} is not a whole number from 0 to {high} ({str(value)[:40]!r})")
    return value


def number(p: dict, key: str, default: Any = _MISSING) -> float:
    value = _get(p, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > 1e15:
        raise BadRow(f"{key!r} is not a finite number ({str(value)[:40]!r})")
    return float(value)


def flag(p: dict, key: str, default: Any = _MISSING) -> bool:
    value = _get(p, key, default)
    if not isinstance(value, bool):
        raise BadRow(f"{key!r} is {type(value).__name__}, not true or false")
    return value


def name(value: object, what: str) -> str:
    """A tenant or service name as Solo validates them (names key the registry's records)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise BadRow(f"the {what} is not a valid name ({str(value)[:40]!r})")
    return value


def revocation_id(p: dict) -> str:
    """The revocation id a `token.revoked` or `token.minted` row names. An id of another shape can never
    equal a token's id, so skipping such a row leaves no token valid that the row could have revoked."""
    return text(p, "revocation_id", pattern=REVOCATION_ID)


def with_seconds(table: pa.Table) -> pa.Table:
    """`table` with its time column as float unix seconds: to_pylist() would turn each time into a datetime
    (most of its cost), and a forged time past year 9999 (or past 2**53 microseconds, for a division in
    integers) would fail the whole read."""
    index = table.schema.get_field_index("time")
    micros = table.column(index).cast(pa.int64()).cast(pa.float64(), safe=False)
    return table.set_column(index, "time", pc.divide(micros, 1_000_000.0))


class Skipped:
    """Rows a reader skipped: counted, and reported in one warning line with the first reason.

    `report()` after a read logs what was skipped since the last report; a reader that follows the log
    reports at most once every `every` seconds (the first time at once)."""

    def __init__(self, what: str, logger: logging.Logger | None = None, every: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.log, self.every, self.clock = what, logger or logging.getLogger("solo.events"), every, clock
        self.count = 0
        self.total = 0
        self.first = ""
        self._reported = -math.inf

    def skip(self, where: object, why: object) -> None:
        self.count += 1
        self.total += 1
        if not self.first:
            self.first = f"{where}: {why}"

    def report(self) -> None:
        if not self.count or self.clock() - self._reported < self.every:
            return
        self._reported = self.clock()
        self.log.warning("%s: skipped %d malformed row(s) (first: %s); they were not applied", self.what,
                         self.count, self.first)
        self.count, self.first = 0, ""


__all__ = ["BadRow", "MAX_INT", "Skipped", "flag", "integer", "name", "number", "payload", "revocation_id", "text",
           "with_seconds"]
