"""Past versions of each service, for `solo rollback --to`: the spec (by fingerprint, see specs.py)
and the state the version had when it was replaced (its snapshot() as JSON text, or None).

One file per service, `<data-dir>/history/<tenant>/<name>.json`, newest first, at most `keep`
entries; private to the operator like the specs (0600 in 0700 directories).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from solo.files import write_atomic

MAX_STATE_BYTES = 16 << 20  # larger snapshots are handed over but not kept for later rollbacks


@dataclass(frozen=True)
class PastVersion:
    version: str
    spec: str  # fingerprint
    state: str | None  # JSON text of its last snapshot; None = none (or too large to keep)
    replaced_at: float


class VersionHistory:
    def __init__(self, directory: Path, keep: int):
        self.directory = Path(directory)
        self.keep = keep

    def _path(self, tenant: str, name: str) -> Path:
        return self.directory / tenant / f"{name}.json"

    def list(self, tenant: str, name: str) -> list[PastVersion]:
        path = self._path(tenant, name)
        if not path.exists():
            return []
        return [PastVersion(**entry) for entry in json.loads(path.read_text())]

    def add(self, tenant: str, name: str, version: str, spec: str, state: str | None) -> None:
        if state is not None and len(state) > MAX_STATE_BYTES:
            state = None
        entries = [PastVersion(version, spec, state, time.time())]
        entries += [e for e in self.list(tenant, name) if e.version != version]
        path = self._path(tenant, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        os.chmod(path.parent, 0o700)
        write_atomic(path, json.dumps([asdict(e) for e in entries[:self.keep]]))

    def find(self, tenant: str, name: str, version: str, current_version: str) -> PastVersion | None:
        return pick(self.list(tenant, name), version, current_version)

    def forget(self, tenant: str, name: str) -> None:
        self._path(tenant, name).unlink(missing_ok=True)


def pick(entries: list[PastVersion], version: str, current_version: str) -> PastVersion | None:
    """The entry for `version`, or (empty) the newest one that is not the current version."""
    return next((e for e in entries if (e.version == version if version else e.version != current_version)), None)
