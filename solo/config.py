"""Solo's configuration: pydantic models loaded once from a TOML file and passed down.

Precedence: defaults < the TOML file (`--config`, else `<data-dir>/solo.toml` if present)
< command-line flags. Unknown keys are an error, so a typo never silently does nothing.
"""
from __future__ import annotations

import asyncio
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from solo.errors import InvalidRequest

DEFAULT_DATA_DIR = Path(os.environ.get("SOLO_DATA_DIR", Path.home() / ".solo"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewayConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=7070, ge=0, le=65535)
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    metrics_port: int = Field(default=0, ge=-1, le=65535,
                              description="Prometheus /metrics port; 0 = off, -1 = any free port")
    metrics_host: str = Field(default="127.0.0.1", description="the address /metrics listens on (loopback unless "
                              "set: the metrics name every tenant and service)")
    metrics_token_file: Path | None = Field(default=None, description="a file holding a token /metrics asks for "
                                            "(Authorization: Bearer <token>); unset = no token")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="the gateway's event loop; uvloop measured 10-20% more calls/s at c=64 (bench/)")
    processes: int = Field(default=1, ge=1, le=64, description="gateway processes sharing the port (SO_REUSEPORT), "
                           "each following the routes; more than one only helps on a head with the cores for them")
    usage_poll_seconds: float = Field(default=15.0, ge=0, description="how often gateway process 0 asks the "
                                      "registry for every running service's RSS and CPU seconds (each host reads "
                                      "/proc) for /metrics; 0 = never (no solo_service_memory_rss_bytes, "
                                      "solo_service_cpu_seconds_total)")


class RestConfig(_Section):
    port: int | None = Field(default=None, ge=-1, le=65535, description="the REST/JSON gateway's port (solo/rest): "
                             "unset = 7080, or any free port when [gateway] port is 0; 0 = any free port; -1 = off. "
                             "Of several gateway processes only process 0 serves it")
    host: str | None = Field(default=None, description="the address REST listens on (unset = [gateway] host)")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="the largest request body REST "
                                "reads; a larger one is answered 413")
    max_connections: int = Field(default=1000, ge=1, description="REST connections and requests at once; past it "
                                 "new requests are answered 503")
    max_body_bytes_in_flight: int = Field(default=256 * 1024 * 1024, ge=1024, description="request bodies REST "
                                          "holds at once, all requests together; a body that would pass it is "
                                          "answered 429 with Retry-After")
    write_timeout_seconds: float = Field(default=30.0, gt=0, description="how long one write of a Server-Sent "
                                         "Events stream may wait for the client to read; past it the stream ends "
                                         "and its connection is dropped (a stalled reader holds no connection)")


class TokenRate(_Section):
    rate_per_second: float = Field(ge=0, description="calls per second (0 = unlimited)")
    burst: float = Field(default=0, ge=0, description="bucket size (0 = 2 s of rate_per_second)")


class LimitsConfig(_Section):
    max_source_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_cpus: float = Field(default=256, gt=0, description="largest num_cpus one service may ask for")
    max_gpus: float = Field(default=64, ge=0)
    max_memory_bytes: int = Field(default=1 << 40, gt=0)
    max_custom_resource: float = Field(default=1_000_000, gt=0)
    max_concurrency: int = Field(default=1000, ge=1)
    max_services_per_tenant: int = Field(default=1000, ge=1)
    service_queue_limit: int = Field(default=1000, ge=0, description="calls that may wait for a service beyond "
                                     "its concurrency; more are shed with RESOURCE_EXHAUSTED")
    max_in_flight: int = Field(default=10_000, ge=1, description="calls in flight at one gateway; at the limit "
                               "each tenant keeps its fair share and the rest is shed")
    adaptive_in_flight: bool = Field(default=True, description="let the in-flight limit move between "
                                     "min_in_flight and max_in_flight with how much calls slow down under load")
    min_in_flight: int = Field(default=16, ge=1, description="the adaptive in-flight limit never goes below this")
    hold_ignored_refusals: bool = Field(default=True, description="answer a shed call only after its retry-after "
                                        "when its tenant's callers keep coming back before it (their refusals "
                                        "would take the gateway's CPU from everyone)")
    breaker_failures: int = Field(default=5, ge=1, description="infrastructure failures in a row (host gone or "
                                  "unreachable, timeouts) that open a service version's circuit breaker")
    breaker_open_seconds: float = Field(default=5.0, gt=0, description="how long an open breaker fails calls fast "
                                        "before one probe call tests the service")
    token_rate_per_second: float = Field(default=10_000, ge=0, description="calls per second per token "
                                         "(a token and its attenuations share one bucket); 0 = unlimited")
    token_burst: float = Field(default=0, ge=0, description="calls a token may make at once (0 = 2 s of the rate)")
    tenant_token_rates: dict[str, TokenRate] = Field(
        default_factory=dict, description="per-tenant overrides, e.g. acme = {rate_per_second = 50, burst = 100}")
    tenant_rate_per_second: float = Field(default=20_000, ge=0, description="calls per second of all of a tenant's "
                                          "tokens together (more tokens minted for a tenant do not multiply its "
                                          "rate); 0 = unlimited")
    tenant_burst: float = Field(default=0, ge=0, description="calls a tenant may make at once (0 = 2 s of the rate)")
    tenant_rates: dict[str, TokenRate] = Field(
        default_factory=dict, description="per-tenant overrides of tenant_rate_per_second and tenant_burst")
    auth_failures_per_second: float = Field(default=20, ge=0, description="refused authentications a source address "
                                            "may cause per second; past it (and a burst of auth_failures_burst) its "
                                            "calls with tokens not already known good are RESOURCE_EXHAUSTED before "
                                            "any signature is checked; 0 = unlimited")
    auth_failures_burst: float = Field(default=100, ge=0, description="refused authentications a source may cause "
                                       "at once")


class RuntimeConfig(_Section):
    default_num_cpus: float = Field(default=0.0, ge=0, description="num_cpus when a deploy asks for none")
    warm_pool_size: int = Field(default=2, ge=0, le=64, description="pre-started hosts of the default shape")
    max_restarts: int = Field(default=3, ge=0)
    restart_backoff_seconds: float = Field(default=0.5, ge=0)
    restart_backoff_max_seconds: float = Field(default=10.0, ge=0)
    schedule_timeout_seconds: float = Field(default=30.0, gt=0, description="how long a host may wait for resources")
    start_timeout_seconds: float = Field(default=60.0, gt=0, description="how long constructor + start() may take")
    stop_grace_seconds: float = Field(default=5.0, ge=0)
    memory_check_seconds: float = Field(default=0.1, gt=0, description="how often a host with a memory limit "
                                        "samples its resident memory")
    on_limit_exceeded: Literal["restart", "stop"] = Field(
        default="restart", description="a service past its memory limit is restarted (within max_restarts) or "
        "stopped (FAILED at once)")
    sandbox: Literal["bwrap", "off"] = Field(
        default="bwrap", description="how service code is locked down: \"bwrap\" (bubblewrap namespaces + seccomp; "
        "`solo up` refuses to start where it cannot run) or \"off\" (no sandbox: trusted code only)")
    seccomp: bool = Field(default=True, description="add the seccomp filter to bwrap cells (needs libseccomp)")
    cell_scratch_bytes: int = Field(default=64 << 20, ge=1 << 20, description="size of a cell's private /tmp "
                                    "(memory-backed)")
    tenant_egress: dict[str, list[str]] = Field(
        default_factory=dict, description="TCP destinations (host:port) each tenant's services may ask for with "
        "--allow-egress, e.g. {acme = [\"api.example.com:443\"]}; \"*\" applies to every tenant. Default: no egress")
    cell_max_open_files: int = Field(default=1024, ge=64, le=1 << 20, description="open files a service may hold")
    wait_for_autoscaler: bool = Field(default=False, description="a deploy asking for resources no current node has "
                                      "waits schedule_timeout_seconds for the autoscaler to add one instead of "
                                      "being refused at once")
    snapshot_seconds: float = Field(default=30.0, ge=0, description="how often the registry keeps the snapshot() of "
                                    "each running service that has one, so a service moved off a lost node comes "
                                    "back with it (0 = never)")
    snapshot_tenant_bytes: int = Field(default=256 << 20, ge=0, description="the most disk a tenant's periodic "
                                       "snapshots may take together; past it its new snapshots are skipped (logged) "
                                       "and its older ones stay (0 = no limit)")


class EventsConfig(_Section):
    roll_seconds: float = Field(default=5.0, gt=0, description="how often committed events become a Parquet segment")
    roll_rows: int = Field(default=100_000, ge=1, description="roll sooner once this many events are committed")
    compact_below_rows: int = Field(default=500_000, ge=0,
                                    description="merge adjacent segments smaller than this, up to 1M rows each")
    retention_days: float = Field(default=0, ge=0, description="drop segments whose newest event is older (0 = keep all)")
    retention_bytes: int = Field(default=0, ge=0, description="drop the oldest segments past this size (0 = no limit)")
    tenant_retention_days: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="per-tenant overrides of retention_days, e.g. {acme = 365, noisy = 1}")
    retention_check_seconds: float = Field(default=60.0, gt=0, description="how often retention is applied")
    checkpoint_seconds: float = Field(default=60.0, gt=0,
                                      description="how often the registry checkpoints its state (bounds the rebuild)")
    watch_poll_seconds: float = Field(default=15.0, gt=0, description="how long one Watch long-poll waits")
    watch_slow_consumer_seconds: float = Field(
        default=30.0, gt=0, description="a watcher that takes no event for this long is ended (resume by id)")
    max_watchers: int = Field(default=512, ge=1, description="Watch streams (gRPC and REST) one gateway process "
                              "serves at once; more are RESOURCE_EXHAUSTED")
    watchers_per_tenant: int = Field(default=16, ge=1, description="Watch streams of one tenant on one gateway "
                                     "process; more are RESOURCE_EXHAUSTED")
    encrypt: bool = Field(default=False, description="encrypt the event log at rest: Parquet modular encryption of "
                          "the segments and AES-GCM of every WAL record (see OPERATIONS, Encryption at rest)")
    key_file: Path | None = Field(default=None, description="the events key (64 hex characters, 0600; made on the "
                                  "first start with encrypt; default <data_dir>/keys/events.key). Back it up apart "
                                  "from the data: without it the encrypted log cannot be read")


class SecurityConfig(_Section):
    token_ttl_days: float = Field(default=30.0, gt=0, description="lifetime of a minted token unless it asks for less")
    max_token_ttl_days: float = Field(default=365.0, gt=0, description="the longest lifetime a mint may ask for")
    operator_token_days: float = Field(default=365.0, gt=0,
                                       description="lifetime of the operator token `solo up` writes (renewed when due)")
    key_cutoff_days: float = Field(default=7.0, ge=0, description="after `solo keys rotate`, how long tokens "
                                   "signed by the old key keep working")
    verify_cache_seconds: float = Field(default=10.0, ge=0, description="how long a verified (token, request) "
                                        "answer is reused; revocation and expiry are still checked on every call")


class TlsConfig(_Section):
    enabled: bool = Field(default=False, description="serve TLS only (no plaintext port); `solo up --tls`")
    dir: Path | None = Field(default=None, description="ca.crt, server.crt, server.key (default <data_dir>/tls; "
                             "`solo certs init` creates them)")
    require_client_cert: bool = Field(default=False, description="mutual TLS: refuse clients without a "
                                      "certificate from this CA; `solo up --require-client-cert`")
    hosts: Literal["off", "remote", "all"] = Field(
        default="off", description="mutual TLS on the gateway-host and service-service call channel with node "
        "certificates (`solo certs node`): \"remote\" for connections from other machines, \"all\" for every one")
    node_dir: Path | None = Field(default=None, description="where each node finds ca.crt, node.crt and node.key for "
                                  "[tls] hosts, the same path on every node (default <tls dir>/node)")


class TenantQuota(_Section):
    max_services: int | None = Field(default=None, ge=0)
    max_cpus: float | None = Field(default=None, ge=0)
    max_gpus: float | None = Field(default=None, ge=0)
    max_memory_bytes: int | None = Field(default=None, ge=0)
    max_concurrent_calls: int | None = Field(default=None, ge=0)


class QuotasConfig(_Section):
    max_cpus: float = Field(default=0, ge=0, description="num_cpus a tenant's active services may request in all "
                            "(0 = no quota)")
    max_gpus: float = Field(default=0, ge=0, description="num_gpus in all (0 = no quota)")
    max_memory_bytes: int = Field(default=0, ge=0, description="memory in all, bytes (0 = no quota)")
    max_concurrent_calls: int = Field(default=0, ge=0, description="calls of one tenant in flight at the gateway "
                                      "(0 = no quota); more get RESOURCE_EXHAUSTED at once")
    tenants: dict[str, TenantQuota] = Field(default_factory=dict, description="per-tenant overrides, e.g. "
                                            "[quotas.tenants.acme] max_cpus = 8 (max_services too)")


class SwapConfig(_Section):
    watch_seconds: float = Field(default=30.0, ge=0, description="after a hot swap, how long the old version is "
                                 "kept ready and the new one watched (crash, health, error rate); 0 = no watch")
    health_check_seconds: float = Field(default=0.5, gt=0, description="how often the new version's health() "
                                        "is checked during the watch window")
    max_error_rate: float = Field(default=0.5, gt=0, le=1, description="share of failed calls during the watch "
                                  "window that rolls the swap back (once min_calls calls were made)")
    min_calls: int = Field(default=20, ge=1, description="calls the new version must have had before its error "
                           "rate counts")
    drain_seconds: float = Field(default=10.0, gt=0, description="how long the old version's in-flight calls may "
                                 "take to finish before its state is taken; past it the swap is abandoned")
    keep_versions: int = Field(default=5, ge=1, description="past versions (code and last state) kept per "
                               "service for `solo rollback --to`")
    max_watch_seconds: float = Field(default=3600.0, gt=0, description="the longest watch window a swap may ask "
                                     "for (the old version holds its resources meanwhile)")
    max_state_bytes: int = Field(default=64 << 20, ge=1024, description="the largest snapshot() (as JSON) a swap "
                                 "hands over; a larger one abandons the swap")


class VaultConfig(_Section):
    max_secret_bytes: int = Field(default=64 * 1024, ge=1, le=1 << 20, description="the largest value one secret "
                                  "version may hold")
    max_secrets_per_tenant: int = Field(default=1000, ge=1, description="keys a tenant may store; more puts of new "
                                        "keys are RESOURCE_EXHAUSTED")
    max_versions_per_key: int = Field(default=10, ge=1, le=1000, description="versions kept per key; a put past it "
                                      "drops the oldest")
    max_tenant_bytes: int = Field(default=8 << 20, ge=1024, description="bytes of encrypted values (every version "
                                  "kept) a tenant may store; past it a put is RESOURCE_EXHAUSTED")
    write_bytes_per_second: int = Field(default=1 << 20, ge=1024, description="bytes of vault file a tenant may "
                                        "make the head rewrite a second (each put and delete rewrites and fsyncs "
                                        "its whole file); past it a put or delete is RESOURCE_EXHAUSTED")
    master_key_file: Path | None = Field(default=None, description="the vault's master key (32 bytes, base64) "
                                         "somewhere off the data disk, e.g. a mounted Kubernetes Secret; unset = "
                                         "<data_dir>/vault/master-<id>.key, made on first start")


class LogsConfig(_Section):
    service_bytes: int = Field(default=4 << 20, ge=64 << 10, description="disk kept per service for its output "
                               "(`solo logs`), in rotating segments; the oldest lines go first")
    segments: int = Field(default=4, ge=2, le=64, description="segments a service's output rotates through "
                          "(each service_bytes / segments)")
    tenant_bytes: int = Field(default=64 << 20, ge=64 << 10, description="disk kept for all of a tenant's services' "
                              "output; past it the tenant's oldest segment goes, whichever service wrote it")
    total_bytes: int = Field(default=1 << 30, ge=1 << 20, description="disk kept for every tenant's output; past "
                             "it the oldest segment of the tenant holding the most goes")
    tenant_rate_bytes: int = Field(default=256 << 10, ge=0, description="bytes a second of a tenant's output the "
                                   "registry keeps (burst 4 s of it; each service is also held to 64 KiB/s by its "
                                   "host); what is over it is dropped and noted in the log (0 = no limit)")
    max_followers: int = Field(default=256, ge=1, description="`solo logs` streams (followed or not) one gateway "
                               "process serves at once")
    followers_per_tenant: int = Field(default=8, ge=1, description="`solo logs` streams (followed or not) of one "
                                      "tenant at once on one gateway process")
    slow_consumer_seconds: float = Field(default=30.0, gt=0, description="a `solo logs` stream whose reader takes "
                                         "no line for this long while one waits is ended (RESOURCE_EXHAUSTED)")


class SoloConfig(_Section):
    data_dir: Path = DEFAULT_DATA_DIR
    namespace: str = "solo"
    gateway: GatewayConfig = GatewayConfig()
    rest: RestConfig = RestConfig()
    limits: LimitsConfig = LimitsConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    events: EventsConfig = EventsConfig()
    security: SecurityConfig = SecurityConfig()
    quotas: QuotasConfig = QuotasConfig()
    tls: TlsConfig = TlsConfig()
    swap: SwapConfig = SwapConfig()
    vault: VaultConfig = VaultConfig()
    logs: LogsConfig = LogsConfig()

    @property
    def tls_dir(self) -> Path:
        return Path(self.tls.dir).expanduser() if self.tls.dir else self.data_dir / "tls"

    @property
    def node_tls_dir(self) -> Path:
        return Path(self.tls.node_dir).expanduser() if self.tls.node_dir else self.tls_dir / "node"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for the gateway (uvloop when installed and asked for)."""
    if name == "uvloop":
        try:
            import uvloop
            return uvloop.new_event_loop
        except ImportError:
            pass
    return asyncio.new_event_loop


def load_config(path: Path | None = None, **overrides) -> SoloConfig:
    """Load the TOML file at `path` (or `<data_dir>/solo.toml` if it exists) and apply overrides.

    Overrides use dotted keys with `__`, e.g. `gateway__port=7071`, `data_dir=...`; None is ignored.
    """
    data: dict = {}
    data_dir = Path(overrides.get("data_dir") or DEFAULT_DATA_DIR).expanduser()
    candidate = path or (data_dir / "solo.toml")
    if path is not None and not path.exists():
        raise InvalidRequest(f"config file {path} does not exist; pass an existing TOML file or drop --config")
    if candidate.exists():
        try:
            data = tomllib.loads(candidate.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequest(f"config file {candidate} is not valid TOML: {exc}") from None
    for key, value in overrides.items():
        if value is None:
            continue
        section = data
        *parents, leaf = key.split("__")
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = value
    data.setdefault("data_dir", str(data_dir))
    try:
        config = SoloConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid configuration ({candidate}): {exc}") from None
    config.data_dir = config.data_dir.expanduser().resolve()
    return config
