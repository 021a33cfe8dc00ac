"""Service specs: what a tenant asked for, validated and normalised before anything starts."""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace

from solo.config import LimitsConfig
from solo.core.payload import MAX_CONFIG_DEPTH, TooDeep, loads_bounded
from solo.errors import InvalidRequest

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")
LABEL_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ENV_VARS = 128
MAX_ENV_BYTES = 256 * 1024
MAX_CONFIG_BYTES = 256 * 1024  # the config travels in every deploy event and spec file
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RESOURCE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
RESERVED_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


@dataclass(frozen=True)
class Resources:
    num_cpus: float = 0.0
    num_gpus: float = 0.0
    memory_bytes: int = 0
    custom: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"num_cpus={self.num_cpus:g}"]
        if self.num_gpus:
            parts.append(f"num_gpus={self.num_gpus:g}")
        if self.memory_bytes:
            parts.append(f"memory={self.memory_bytes} bytes")
        parts += [f"{k}={v:g}" for k, v in sorted(self.custom.items())]
        return ", ".join(parts)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    source: str
    filename: str = "service.py"
    version: str = ""
    class_name: str = ""
    resources: Resources = Resources()
    env: dict[str, str] = field(default_factory=dict)
    config_json: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    max_concurrency: int = 1
    max_restarts: int = -1
    allow_egress: tuple[str, ...] = ()  # "host:port" destinations the service's cell may connect to
    secrets: tuple[str, ...] = ()  # vault keys handed to the service at start (keys only, never values)

    def fingerprint(self) -> str:
        """Identity of the spec for idempotent deploys (the generated version is not part of it)."""
        fields = asdict(self)
        if not self.allow_egress:  # specs from before egress existed keep their fingerprint
            del fields["allow_egress"]
        if not self.secrets:  # likewise specs from before the vault
            del fields["secrets"]
        body = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def with_version(self, version: str) -> ServiceSpec:
        return replace(self, version=version)


def validate_name(name: str, what: str = "service name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidRequest(f"invalid {what} {name!r}: use 1-63 lowercase letters, digits and '-', "
                             "starting with a letter (e.g. 'counter' or 'kv-store')")
    return name


def _check_amount(what: str, value: float, limit: float) -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) or value < 0:
        raise InvalidRequest(f"{what} must be a finite number >= 0, got {value!r}")
    if value > limit:
        raise InvalidRequest(f"{what}={value:g} is more than one service may ask for (limit {limit:g}); "
                             "ask for less or raise [limits] in the config")
    return float(value)


def validate_resources(res: Resources, limits: LimitsConfig, default_num_cpus: float) -> Resources:
    num_cpus = _check_amount("num_cpus", res.num_cpus, limits.max_cpus) if res.num_cpus else default_num_cpus
    num_gpus = _check_amount("num_gpus", res.num_gpus, limits.max_gpus)
    memory = int(_check_amount("memory_bytes", res.memory_bytes, limits.max_memory_bytes))
    custom = {}
    for key, value in res.custom.items():
        if key in RESERVED_RESOURCES or not RESOURCE_NAME_RE.fullmatch(key):
            raise InvalidRequest(f"invalid custom resource name {key!r}: use letters, digits, '_', '.', ':', '-' "
                                 f"(CPU, GPU and memory have their own fields)")
        custom[key] = _check_amount(f"custom resource {key}", value, limits.max_custom_resource)
    return Resources(num_cpus=num_cpus, num_gpus=num_gpus, memory_bytes=memory, custom=custom)


def check_source(source: str, filename: str, limit: int) -> None:
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidRequest(f"source of {filename} is {size} bytes, over the limit of {limit} bytes; "
                             "split the service or raise [limits] max_source_bytes")
    if not source.strip():
        raise InvalidRequest(f"source of {filename} is empty; send the Python file that defines the service class")
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = filename if exc.lineno is None else f"{filename}, line {exc.lineno}"
        where += f", column {exc.offset}" if exc.offset and exc.lineno is not None else ""
        text = f": {exc.text.strip()}" if exc.text else ""
        raise InvalidRequest(f"syntax error in {where}: {exc.msg}{text}") from None
    except (ValueError, RecursionError) as exc:  # e.g. NUL bytes, absurd nesting
        raise InvalidRequest(f"{filename} cannot be compiled: {exc}") from None


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > 64:
        raise InvalidRequest(f"at most 64 labels, not {len(labels)}")
    for key, value in labels.items():
        if not LABEL_KEY_RE.fullmatch(key) or len(value) > 256:
            raise InvalidRequest(f"invalid label {key!r}={value!r}: keys are up to 63 of [A-Za-z0-9._/-], "
                                 "values up to 256 characters")
    return labels


MAX_EGRESS_RULES = 32
MAX_SERVICE_SECRETS = 32
SECRET_KEY_RE = re.compile(r"[A-Za-z0-9_./:-]{1,127}")  # a vault key (security/vault.py)


def validate_secret_keys(keys) -> tuple[str, ...]:
    """The vault keys a service asks for, checked and sorted (without duplicates)."""
    keys = sorted(set(keys))
    if len(keys) > MAX_SERVICE_SECRETS:
        raise InvalidRequest(f"at most {MAX_SERVICE_SECRETS} secrets per service, not {len(keys)}")
    bad = [k for k in keys if not isinstance(k, str) or not SECRET_KEY_RE.fullmatch(k)]
    if bad:
        raise InvalidRequest(f"invalid secret key {str(bad[0])[:64]!r}: use 1-127 letters, digits and '_', '.', '/', "
                             "':', '-' (e.g. db/password)")
    return tuple(keys)
_EGRESS_HOST_RE = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def parse_egress(rule: str) -> tuple[str, int]:
    """One egress rule, "host:port" ("[v6]:port" for IPv6), as (host, port); InvalidRequest otherwise."""
    import ipaddress

    text = rule.strip().lower() if isinstance(rule, str) else ""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    valid_host = False
    try:
        ipaddress.ip_address(host)
        valid_host = True
    except ValueError:
        valid_host = bool(_EGRESS_HOST_RE.fullmatch(host)) and ":" not in host
    if not sep or not valid_host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidRequest(f"invalid egress rule {str(rule)[:300]!r}: use host:port with a DNS name or an IP address "
                             "and a port 1-65535, e.g. 'api.example.com:443' or '[2001:db8::1]:8080'")
    return host, int(port)


def egress_rule(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def validate_egress(rules) -> tuple[str, ...]:
    if len(rules) > MAX_EGRESS_RULES:
        raise InvalidRequest(f"at most {MAX_EGRESS_RULES} egress rules per service, not {len(rules)}")
    return tuple(sorted({egress_rule(*parse_egress(r)) for r in rules}))


def check_egress(spec: ServiceSpec, tenant: str, allowed: dict[str, list[str]]) -> None:
    """A service may only ask for destinations the operator allowed its tenant (or every tenant, "*")."""
    granted = {egress_rule(*parse_egress(r)) for r in [*allowed.get(tenant, ()), *allowed.get("*", ())]}
    missing = [r for r in spec.allow_egress if r not in granted]
    if missing:
        from solo.errors import PermissionDenied

        raise PermissionDenied(f"egress to {', '.join(missing)} is not allowed for tenant {tenant!r}; the operator "
                               f"allows it in the config: [runtime] tenant_egress = {{{tenant} = {missing!r}}}")


def validate_spec(spec: ServiceSpec, limits: LimitsConfig, default_num_cpus: float = 0.0) -> ServiceSpec:
    validate_name(spec.name)
    if spec.version and not VERSION_RE.fullmatch(spec.version):
        raise InvalidRequest(f"invalid version {spec.version!r}: use up to 64 letters, digits, '.', '_', '+', '-'")
    if spec.class_name and (len(spec.class_name) > 128 or not spec.class_name.isidentifier()):
        raise InvalidRequest(f"invalid class name {spec.class_name[:64]!r}: it must be a Python identifier of at "
                             "most 128 characters")
    filename = (spec.filename or f"{spec.name}.py").replace("\\", "/").rsplit("/", 1)[-1]
    if len(filename) > 128 or not filename.isprintable():
        raise InvalidRequest(f"invalid filename {filename[:64]!r}: at most 128 printable characters")
    if len(spec.env) > MAX_ENV_VARS or sum(len(k) + len(v) for k, v in spec.env.items()) > MAX_ENV_BYTES:
        raise InvalidRequest(f"at most {MAX_ENV_VARS} environment variables of {MAX_ENV_BYTES >> 10} KiB in all; "
                             "pass larger data in the config or the source")
    if len(spec.config_json) > MAX_CONFIG_BYTES:
        raise InvalidRequest(f"config is {len(spec.config_json)} characters, over {MAX_CONFIG_BYTES >> 10} KiB; "
                             "put large data in the source or fetch it at start")
    check_source(spec.source, filename, limits.max_source_bytes)
    for key, value in spec.env.items():
        if not ENV_KEY_RE.fullmatch(key):
            raise InvalidRequest(f"invalid environment variable name {key!r}: use letters, digits and '_'")
        if "\0" in value or len(value) > 32 * 1024:
            raise InvalidRequest(f"invalid value for environment variable {key}: no NUL bytes, at most 32 KiB")
    validate_labels(spec.labels)
    if spec.config_json:
        try:
            config = loads_bounded(spec.config_json, MAX_CONFIG_DEPTH)
        except TooDeep:
            raise InvalidRequest(f"config is nested deeper than {MAX_CONFIG_DEPTH} levels of objects and arrays; "
                                 "flatten it (or pass deep data as a string)") from None
        except ValueError as exc:
            raise InvalidRequest(f"config is not valid JSON ({exc}); pass a JSON object") from None
        if not isinstance(config, dict):
            raise InvalidRequest("config must be a JSON object, e.g. '{\"greeting\": \"hi\"}'")
    concurrency = spec.max_concurrency or 1
    if not 1 <= concurrency <= limits.max_concurrency:
        raise InvalidRequest(f"max_concurrency must be between 1 and {limits.max_concurrency}, got {concurrency}")
    if spec.max_restarts < -1 or spec.max_restarts > 1000:
        raise InvalidRequest(f"max_restarts must be between 0 and 1000 (-1 for the default), got {spec.max_restarts}")
    return replace(spec, filename=filename, max_concurrency=concurrency, allow_egress=validate_egress(spec.allow_egress),
                   secrets=validate_secret_keys(spec.secrets),
                   resources=validate_resources(spec.resources, limits, default_num_cpus))
