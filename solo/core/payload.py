"""How call arguments and results travel: JSON text or raw bytes.

A JSON object becomes keyword arguments, a JSON array positional arguments, any other JSON value
the single argument; raw bytes are the single argument. An empty input means no arguments.
"""
from __future__ import annotations

import json
from typing import Any

from solo.errors import InvalidRequest, ServiceFailed

MAX_CONFIG_DEPTH = 64  # nesting of a service's config JSON (objects and arrays)


class TooDeep(ValueError):
    """JSON nested deeper than allowed."""


def loads_bounded(text: str, max_depth: int) -> Any:
    """json.loads that refuses nesting deeper than `max_depth` levels of objects/arrays with TooDeep
    (also nesting past Python's recursion limit, which json.loads reports as RecursionError), and
    invalid JSON with ValueError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(f"nested deeper than {max_depth} levels") from None
    level = [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise TooDeep(f"nested deeper than {max_depth} levels")
            level.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
                         if isinstance(child, (dict, list)))
    return value


def decode_args(json_text: str | None, raw: bytes | None) -> tuple[tuple, dict]:
    if raw is not None:
        return (raw,), {}
    if not json_text:
        return (), {}
    try:
        value = json.loads(json_text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"arguments are not valid JSON ({exc}); send a JSON object of keyword "
                             "arguments, a JSON array of positional arguments, or a single JSON value") from None
    if isinstance(value, dict):
        return (), value
    if isinstance(value, list):
        return tuple(value), {}
    return (value,), {}


def encode_args(*args: Any, **kwargs: Any) -> tuple[str | None, bytes | None]:
    """Client side: the inverse of decode_args."""
    if args and kwargs:
        raise InvalidRequest("pass either positional or keyword arguments, not both")
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return None, bytes(args[0])
    if kwargs:
        return json.dumps(kwargs), None
    if not args:
        return None, None
    return json.dumps(list(args)), None


def encode_result(value: Any) -> tuple[str | None, bytes | None]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None, bytes(value)
    try:
        return json.dumps(value), None
    except (TypeError, ValueError) as exc:
        raise ServiceFailed(f"the result is not JSON-serializable ({exc}); return JSON values or bytes",
                            exception_type="TypeError") from None


def decode_result(json_text: str | None, raw: bytes | None) -> Any:
    if raw is not None:
        return raw
    return json.loads(json_text) if json_text else None
