"""Where full service specs live so the registry can be rebuilt: `<data-dir>/specs/<fingerprint>.json`.

Events name a spec by its fingerprint and never carry its environment values (they may be
secrets); the files are private to the operator (0600 in a 0700 directory).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from solo.core.spec import Resources, ServiceSpec
from solo.events.readback import HEX64
from solo.files import write_atomic

log = logging.getLogger("solo.registry")


class SpecStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def put(self, spec: ServiceSpec) -> str:
        fingerprint = spec.fingerprint()
        path = self.directory / f"{fingerprint}.json"
        if not path.exists():
            write_atomic(path, json.dumps(dataclasses.asdict(spec)))
        return fingerprint

    def get(self, fingerprint: str) -> ServiceSpec | None:
        """The spec, or None when there is none (or the file is unreadable, said in a warning): the
        registry then marks the service FAILED instead of not starting at all."""
        if not isinstance(fingerprint, str) or not HEX64.fullmatch(fingerprint):
            return None  # fingerprints come from events: never a path of another shape
        path = self.directory / f"{fingerprint}.json"
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return ServiceSpec(**{**data, "resources": Resources(**data["resources"])})
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            log.warning("the spec file %s is unreadable (%s: %s)", path, type(exc).__name__, str(exc)[:200])
            return None
