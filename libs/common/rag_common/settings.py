"""Typed settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_common.health.signals import Thresholds
from rag_common.telemetry.tracing import SAMPLER_NAMES


def secrets_dir() -> str | None:
    """The folder where a setting may also be a file named after its variable (Compose and
    Kubernetes mount secrets there: /run/secrets/RAG_IDENTITY_KEY); the variable wins."""
    folder = os.environ.get("RAG_SECRETS_DIR", "/run/secrets")
    return folder if os.path.isdir(folder) else None


class ServiceSettings(BaseSettings):
    """Settings every service has. Read from the environment once, in the service's main()."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, secrets_dir=secrets_dir())

    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 in a container.")
    port: int = Field(0, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    log_level: str = Field("INFO", description="Lowest log level written to stdout.")
    grace_period_s: float = Field(
        10.0, gt=0, description="On SIGTERM, how long calls in flight may take to finish."
    )
    shutdown_delay_s: float = Field(
        1.0,
        ge=0,
        description="On SIGTERM, how long the port keeps taking calls, with health "
        "NOT_SERVING, before the grace period starts: calls already sent arrive and are "
        "answered, and balancers move away meanwhile.",
    )
    max_concurrent_rpcs: int = Field(
        256, ge=1, description="Calls served at once; more are refused with RESOURCE_EXHAUSTED."
    )
    identity_key: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("RAG_IDENTITY_KEY"),
        description="Key (at least 32 characters) every service of the suite signs and checks "
        "internal calls with; one variable for all four. Without it internal services refuse "
        "every call. `rag up` makes one for the processes it starts. To rotate it: several "
        "keys separated by commas, the first signing and all accepted (roll 'old,new', then "
        "'new,old', then 'new').",
    )
    tls_cert_file: str = Field(
        "",
        validation_alias=AliasChoices("RAG_TLS_CERT_FILE"),
        description="PEM certificate (chain) of this process, for its port and as its client "
        "certificate; with the key and CA below, every port speaks TLS. Empty: plaintext.",
    )
    tls_key_file: str = Field(
        "", validation_alias=AliasChoices("RAG_TLS_KEY_FILE"), description="Its PEM key."
    )
    tls_ca_file: str = Field(
        "",
        validation_alias=AliasChoices("RAG_TLS_CA_FILE"),
        description="PEM CA bundle every peer (server or client) is verified against.",
    )
    require_client_certs: bool = Field(
        True,
        description="With TLS, refuse callers without a certificate the CA signed (mTLS).",
    )
    probe_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="A plaintext port serving only grpc.health.v1, for Kubernetes probes "
        "(which speak no TLS) when the main port does; 0: none.",
    )
    call_timeout_s: float = Field(
        30.0, gt=0, description="Deadline of an outbound call when the inbound one has none."
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest request message accepted; gRPC refuses a larger one from its "
        "length prefix, before reading or parsing it (RESOURCE_EXHAUSTED). Twice the "
        "largest public request, which is the most an internal call legitimately carries.",
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint; 0: none."
    )
    max_connection_age_s: float = Field(
        30.0,
        ge=0,
        description="Connections older than this are closed (calls on them may finish), so "
        "callers resolve the service again and spread over replicas added since; 0: never.",
    )
    max_connection_age_grace_s: float = Field(
        30.0, ge=0, description="How long calls on a connection closed for its age may run on."
    )
    stream_write_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A streamed reply whose reader lets one message wait this long is cut "
        "(its slot freed); readers that keep reading are never cut.",
    )
    traces_exporter: str = Field(
        "none",
        pattern=r"^\s*(none|console|otlp)(\s*,\s*(none|console|otlp))*\s*$",
        validation_alias=AliasChoices("OTEL_TRACES_EXPORTER"),
        description="Where spans go: `otlp` (to OTEL_EXPORTER_OTLP_ENDPOINT), `console` "
        "(JSON lines on stdout) or `none`. The SDK reads the other OTEL_EXPORTER_OTLP_* and "
        "OTEL_BSP_* variables.",
    )
    otlp_endpoint: str = Field(
        "",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/gRPC collector for `otlp`, e.g. http://otel-collector:4317; empty: "
        "the SDK's default (localhost:4317).",
    )
    traces_sampler: Literal[SAMPLER_NAMES] = Field(  # type: ignore[valid-type]
        "parentbased_always_on",
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER"),
        description="Which traces are kept: always_on, always_off, traceidratio, "
        "parentbased_always_on, parentbased_always_off or parentbased_traceidratio.",
    )
    traces_sampler_arg: float = Field(
        1.0,
        ge=0,
        le=1,
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER_ARG"),
        description="Share of traces kept by the ratio samplers.",
    )
    trace_service_name: str = Field(
        "",
        validation_alias=AliasChoices("OTEL_SERVICE_NAME"),
        description="service.name of this process's spans; empty: rag-<service>.",
    )
    health_window_s: float = Field(
        60.0, gt=0, description="Sliding window the health signals are judged over."
    )
    health_min_calls: int = Field(
        20, ge=1, description="Fewer calls (or cache lookups) in the window: not judged."
    )
    health_p95_warning_s: float = Field(2.0, gt=0, description="p95 latency: degraded above.")
    health_p95_critical_s: float = Field(5.0, gt=0, description="p95 latency: unhealthy above.")
    health_error_rate_warning: float = Field(
        0.01, ge=0, le=1, description="Share of calls failing on the service's side: degraded."
    )
    health_error_rate_critical: float = Field(
        0.05, ge=0, le=1, description="Share of calls failing on the service's side: unhealthy."
    )
    health_cache_hit_rate_warning: float = Field(
        0.30, ge=0, le=1, description="Answer cache hit rate (query): degraded below."
    )
    health_cache_hit_rate_critical: float = Field(
        0.10, ge=0, le=1, description="Answer cache hit rate (query): unhealthy below."
    )
    health_cpu_warning: float = Field(
        0.70, gt=0, description="Process CPU over the CPUs it may use: degraded above."
    )
    health_cpu_critical: float = Field(0.90, gt=0, description="Process CPU: unhealthy above.")
    health_memory_warning: float = Field(
        0.75, gt=0, le=1, description="Resident memory over the memory limit: degraded above."
    )
    health_memory_critical: float = Field(
        0.90, gt=0, le=1, description="Resident memory: unhealthy above."
    )

    def thresholds(self) -> Thresholds:
        """The health signals' thresholds."""
        return Thresholds(
            **{name: getattr(self, f"health_{name}") for name in Thresholds.__dataclass_fields__}
        )


def env_name(settings_type: type[BaseSettings], field: str, prefix: str | None = None) -> str:
    """The environment variable a setting is read from: its shared name when it has one
    (validation_alias, like RAG_IDENTITY_KEY), else the prefixed field name."""
    info = settings_type.model_fields.get(field)
    aliases = getattr(info.validation_alias, "choices", None) if info is not None else None
    if aliases:
        return str(aliases[0])
    if prefix is None:
        prefix = settings_type.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def default_data_dir() -> Path:
    """Where embedded stores keep their files unless configured otherwise."""
    return Path.cwd() / ".rag-data"


class RedisSettings(ServiceSettings):
    """Settings of a service that can share its caches through Redis."""

    redis_url: str = Field(
        "",
        description="Redis to share caches through, e.g. redis://127.0.0.1:6379/0; "
        "empty: in-process caches only.",
    )
    redis_cluster: bool = Field(False, description="Whether redis_url is a Redis Cluster node.")
