"""Configuration reload, the pure part: where the config came from, what changed, what may change live.

`solo up` remembers how it made its config (`ConfigSource`: the TOML file and the command-line flags);
a reload (`solo config reload`, SIGHUP) loads it again the same way (defaults < file < flags, so the
flags given at `solo up` still win), compares it with the config in force (`diff`), and takes over only
the keys that can change while Solo runs (`LIVE`, `merge_live`). Every other key that differs is
reported as needing a restart and stays as it was. `to_toml` renders the config in force for
`solo config show`. No Ray, no gRPC: the registry (registry/reload.py) and the gateway
(gateway/config_rpc.py) call these.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from solo.config import EventsConfig, SoloConfig, load_config
from solo.core.spec import NAME_RE
from solo.errors import FailedPrecondition

# What a reload applies while Solo runs (a key, or a whole section/table of them). Everything else needs a restart.
LIVE = (
    "quotas",                                   # registry (deploys) and gateways (calls in flight)
    "limits.max_services_per_tenant",           # registry (the default max_services quota)
    "limits.token_rate_per_second", "limits.token_burst", "limits.tenant_token_rates",  # every gateway process
    "limits.tenant_rate_per_second", "limits.tenant_burst", "limits.tenant_rates",
    "limits.auth_failures_per_second", "limits.auth_failures_burst",
    "events.retention_days", "events.retention_bytes", "events.tenant_retention_days",  # the event-log actor
    "events.retention_check_seconds",
    "runtime.tenant_egress",                    # deploys, starts, and running services' hosts (new connections)
)
RELOADED_FILE = "config-reloaded.json"  # <data-dir>: the config in force after the last reload (actors restarted by
                                        # Ray take its live keys over); `solo up` deletes it
MAX_EVENT_KEYS = 100  # keys named in one config.reloaded event (the rest are counted)
_SECRET_NAME = re.compile(r"(password|secret|token|_key)$")  # a value under such a name is never shown
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
log = logging.getLogger("solo")


@dataclass(frozen=True)
class ConfigSource:
    """How `solo up` made its config: `path` is --config (absolute; None: `<data-dir>/solo.toml` if it
    exists), `overrides` the flags as `load_config` overrides (JSON values only)."""

    path: str | None = None
    overrides: dict = field(default_factory=dict)

    def load(self) -> SoloConfig:
        """The config as `solo up` would make it now. InvalidRequest naming the file, the key and the problem
        when it does not load; FailedPrecondition when the --config file is gone."""
        path = Path(self.path) if self.path else None
        if path is not None and not path.exists():
            raise FailedPrecondition(f"the config file Solo was started with, {path}, no longer exists; put it back "
                                     "and reload again (the configuration in force is unchanged)")
        return load_config(path, **self.overrides)

    def file(self) -> str:
        """The file a reload reads ("" when there is none: defaults and flags only)."""
        if self.path:
            return self.path
        data_dir = self.overrides.get("data_dir")
        candidate = Path(data_dir) / "solo.toml" if data_dir else None
        return str(candidate) if candidate is not None and candidate.exists() else ""

    def to_json(self) -> dict:
        return {"path": self.path, "overrides": self.overrides}

    @classmethod
    def from_json(cls, data: dict | None) -> ConfigSource | None:
        return None if not data else cls(data.get("path"), dict(data.get("overrides") or {}))

    @classmethod
    def of(cls, path: Path | str | None, data_dir: Path, /, **overrides) -> ConfigSource:
        """The source of `load_config(path, **overrides)` that made a config whose data_dir is `data_dir`."""
        kept = {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items() if v is not None}
        kept["data_dir"] = str(data_dir)  # resolved: a reload elsewhere reads the same directory
        return cls(str(Path(path).expanduser().resolve()) if path else None, json.loads(json.dumps(kept)))


def is_live(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in LIVE)


def _plain(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    return value


def flatten(model: BaseModel, prefix: str = "") -> dict[str, object]:
    """Dotted keys to values: sections and their keys; a table of entries (per-tenant rates, quotas, egress,
    retention) one key per entry, e.g. "quotas.tenants.acme" or "runtime.tenant_egress.*"."""
    out: dict[str, object] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.update(flatten(value, f"{prefix}{name}."))
        elif isinstance(value, dict):
            for key, entry in value.items():
                out[f"{prefix}{name}.{key}"] = _plain(entry)
        else:
            out[f"{prefix}{name}"] = _plain(value)
    return out


@dataclass(frozen=True)
class Diff:
    changed: tuple[str, ...]        # live keys whose value differs: a reload applies them
    needs_restart: tuple[str, ...]  # other keys that differ: in force only after the next `solo up`


def diff(in_force: SoloConfig, loaded: SoloConfig) -> Diff:
    old, new = flatten(in_force), flatten(loaded)
    missing = object()
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, missing) != new.get(k, missing))
    return Diff(tuple(k for k in keys if is_live(k)), tuple(k for k in keys if not is_live(k)))


def merge_live(in_force: SoloConfig, loaded: SoloConfig) -> SoloConfig:
    """`in_force` with every LIVE key (or table) taken from `loaded`; everything else as it was."""
    data, new = in_force.model_dump(), loaded.model_dump()
    for key in LIVE:
        *parents, leaf = key.split(".")
        into, source = data, new
        for parent in parents:
            into, source = into[parent], source[parent]
        into[leaf] = source[leaf]
    return SoloConfig.model_validate(data)


def tenant_keys(keys: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """The changed keys that concern one tenant by name (its own quotas, rates, retention, egress), by tenant:
    what that tenant may see of a reload. "*" and sections for everyone are nobody's in particular."""
    tables = ("quotas.tenants.", "limits.tenant_token_rates.", "limits.tenant_rates.",
              "events.tenant_retention_days.", "runtime.tenant_egress.")
    out: dict[str, list[str]] = {}
    for key in keys:
        for table in tables:
            if key.startswith(table):
                tenant = key[len(table):]
                if NAME_RE.fullmatch(tenant):  # a tenant's name ("*" and odd table keys are nobody's)
                    out.setdefault(tenant, []).append(key)
    return out


def capped(keys: tuple[str, ...] | list[str]) -> dict:
    """Keys for an event payload: at most MAX_EVENT_KEYS named, the rest counted."""
    keys = list(keys)
    return {"keys": keys[:MAX_EVENT_KEYS], **({"more": len(keys) - MAX_EVENT_KEYS} if len(keys) > MAX_EVENT_KEYS
                                              else {})}


@dataclass(frozen=True)
class Reloaded:
    """What `<data-dir>/config-reloaded.json` keeps: the config in force after the last reload."""

    config: SoloConfig
    version: int
    loaded_at: float
    path: str

    def to_json(self) -> str:
        return json.dumps({"config": self.config.model_dump(mode="json"), "version": self.version,
                           "loaded_at": self.loaded_at, "path": self.path})


def read_reloaded(path: Path) -> Reloaded | None:
    """The last reload's config in force, or None (no reload since `solo up`, or unreadable: then the config
    Solo was started with stands, and the log says so)."""
    try:
        data = json.loads(Path(path).read_text())
        return Reloaded(SoloConfig.model_validate(data["config"]), int(data["version"]), float(data["loaded_at"]),
                        str(data.get("path") or ""))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s is unreadable (%s); the configuration Solo was started with stands", path, exc)
        return None


def reloaded_events(path: Path) -> EventsConfig | None:
    """[events] of the last reload (the event-log actor's retention after Ray restarted it), or None."""
    found = read_reloaded(path)
    return found.config.events if found is not None else None


# -- solo config show ------------------------------------------------------------------------------------------

def redacted(data: dict) -> dict:
    """The config's data with any value under a secret-sounding name (…token, …secret, …password, …_key) hidden.
    Solo's config holds paths to secret files (e.g. metrics_token_file), never secrets: shown as paths."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = redacted(value)
        elif isinstance(value, str) and value and _SECRET_NAME.search(key):
            out[key] = "(hidden)"
        else:
            out[key] = value
    return out


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string (the same escapes)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_text(data: dict) -> str:
    """`data` (top-level keys, then one table per section) as TOML text; None values are left out."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for section, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{_key(section)}]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines).lstrip("\n") + "\n"


def to_toml(config: SoloConfig) -> str:
    """The config as a TOML file `load_config` reads back to the same config (unset keys left out, secret-sounding
    values hidden)."""
    return toml_text(redacted(config.model_dump(mode="json")))


__all__ = ["LIVE", "MAX_EVENT_KEYS", "RELOADED_FILE", "ConfigSource", "Diff", "Reloaded", "capped", "diff", "flatten",
           "is_live", "merge_live", "read_reloaded", "redacted", "reloaded_events", "tenant_keys", "to_toml",
           "toml_text"]
