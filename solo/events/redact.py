"""Keeping secrets out of event payloads that carry someone's free text.

Solo's own fields are chosen so that no event holds a secret: a spec's env *keys* and fingerprint,
never its values or config; a token's revocation id, never the token; secret names, never values.
But some fields carry text Solo did not write: a service's exception message as a crash reason, a
discovery address. Such text can hold a secret the service was given (`could not connect to
postgres://app:hunter2@db`), so it passes through `redact` before it becomes an event:

- the password of a URL's user info (`scheme://user:password@host`) becomes `***`;
- each of the `secrets` given (a spec's env values) becomes `[env NAME]`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:/@]{0,256}:)[^\s@/]{1,512}(@)")
MIN_SECRET = 6    # shorter env values ("1", "true", "debug") are settings, and redacting them garbles text
MAX_DEPTH = 8


def redact_text(text: str, secrets: Mapping[str, str] | None = None) -> str:
    text = URL_PASSWORD.sub(r"\1***\2", text)
    for name, value in sorted((secrets or {}).items(), key=lambda kv: -len(kv[1])):
        if len(value) >= MIN_SECRET and value in text:
            text = text.replace(value, f"[env {name}]")
    return text


def redact(value, secrets: Mapping[str, str] | None = None, _depth: int = 0):
    """`value` (a payload: dicts, lists, text, numbers) with every text in it redacted."""
    if isinstance(value, str):
        return redact_text(value, secrets)
    if _depth >= MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: redact(v, secrets, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets, _depth + 1) for v in value]
    return value


__all__ = ["redact", "redact_text"]
