"""Where full service specs live so the registry can be rebuilt: `<data-dir>/specs/<tenant>/<service>/<fingerprint>.json`.

Events name a spec by its fingerprint and never carry its environment values (they may be
secrets); the files are private to the operator (0600 in 0700 directories).

A service's folder holds only the specs something still needs: its current version, the version
kept in a swap's watch window, and the past versions in its history (`solo rollback --to`). The
registry prunes the folder after every operation on the service (under the service's lock, so no
two operations race on it), removes it with the service, and sweeps every folder when it starts.
A refused deploy therefore leaves nothing behind. Specs of older releases (`specs/<fingerprint>.json`)
are still read, and moved into the services' folders by the first sweep.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

from solo.core.spec import NAME_RE, Resources, ServiceSpec
from solo.events.readback import HEX64
from solo.files import write_atomic

log = logging.getLogger("solo.registry")


class SpecStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def _folder(self, tenant: str, name: str) -> Path:
        if not (NAME_RE.fullmatch(tenant or "") and NAME_RE.fullmatch(name or "")):
            raise ValueError(f"not a tenant and service name: {tenant!r}, {name!r}")
        return self.directory / tenant / name

    def put(self, tenant: str, spec: ServiceSpec) -> str:
        fingerprint = spec.fingerprint()
        folder = self._folder(tenant, spec.name)
        path = folder / f"{fingerprint}.json"
        if not path.exists():
            self._make(folder)
            write_atomic(path, json.dumps(dataclasses.asdict(spec)))
        return fingerprint

    @staticmethod
    def _make(folder: Path) -> None:
        for directory in (folder.parent, folder):
            directory.mkdir(exist_ok=True)
            os.chmod(directory, 0o700)

    def get(self, fingerprint: str, tenant: str, name: str) -> ServiceSpec | None:
        """The spec, or None when there is none (or the file is unreadable, said in a warning): the
        registry then marks the service FAILED instead of not starting at all."""
        if not isinstance(fingerprint, str) or not HEX64.fullmatch(fingerprint):
            return None  # fingerprints come from events: never a path of another shape
        path = self._folder(tenant, name) / f"{fingerprint}.json"
        if not path.exists():
            path = self.directory / f"{fingerprint}.json"  # written by an older release
            if not path.exists():
                return None
        try:
            data = json.loads(path.read_text())
            return ServiceSpec(**{**data, "resources": Resources(**data["resources"])})
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            log.warning("the spec file %s is unreadable (%s: %s)", path, type(exc).__name__, str(exc)[:200])
            return None

    def prune(self, tenant: str, name: str, keep: set[str]) -> list[str]:
        """Delete the service's specs not in `keep` (its folder too when nothing is kept). Returns the
        fingerprints deleted. The caller holds the service's lock."""
        folder = self._folder(tenant, name)
        if not folder.is_dir():
            return []
        gone = []
        for path in folder.iterdir():
            if path.name.endswith(".json") and path.name[:-5] in keep:
                continue
            path.unlink(missing_ok=True)  # stray temporaries of an interrupted write go too
            gone.append(path.name.removesuffix(".json"))
        if not keep:
            for directory in (folder, folder.parent):
                try:
                    directory.rmdir()
                except OSError:
                    break  # not empty: other services of the tenant
        return gone

    def sweep(self, keep: dict[tuple[str, str], set[str]]) -> None:
        """At start (nothing else runs): every service folder keeps only `keep[(tenant, name)]`; specs of an
        older release's flat layout that are still needed move into their folders, the others go."""
        flat = [p for p in self.directory.glob("*.json") if HEX64.fullmatch(p.stem)]
        for (tenant, name), fingerprints in keep.items():
            for fingerprint in fingerprints:
                old = self.directory / f"{fingerprint}.json"
                new = self._folder(tenant, name) / f"{fingerprint}.json"
                if old.exists() and not new.exists():
                    self._make(new.parent)
                    write_atomic(new, old.read_text())
        for path in flat:
            path.unlink(missing_ok=True)
        for tenant_dir in [d for d in self.directory.iterdir() if d.is_dir()]:
            for folder in [d for d in tenant_dir.iterdir() if d.is_dir()]:
                if NAME_RE.fullmatch(tenant_dir.name) and NAME_RE.fullmatch(folder.name):
                    self.prune(tenant_dir.name, folder.name, keep.get((tenant_dir.name, folder.name), set()))
                else:
                    shutil.rmtree(folder, ignore_errors=True)
            try:
                tenant_dir.rmdir()
            except OSError:
                pass
