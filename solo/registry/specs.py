"""Where full service specs live so the registry can be rebuilt: `<data-dir>/specs/<fingerprint>.json`.

Events name a spec by its fingerprint and never carry its environment values (they may be
secrets); the files are private to the operator (0600 in a 0700 directory).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from solo.core.spec import Resources, ServiceSpec
from solo.files import write_atomic


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
        path = self.directory / f"{fingerprint}.json"
        if not fingerprint or not path.exists():
            return None
        data = json.loads(path.read_text())
        return ServiceSpec(**{**data, "resources": Resources(**data["resources"])})
