"""Typed configuration: a YAML file, then environment variables on top.

Every setting has a dotted path (`broker.type`) and can be set from the environment in two
ways: by a well-known name from the table `ENVIRONMENT` (such as `BROKER_TYPE`,
`BROKER_ADDRESS`, `PULSAR_JWT_TOKEN`, `NATS_SERVER_URL`; `COZE_MQ_TYPE` and `MQ_NAME_SERVER`
are accepted too), or generically as `<PREFIX>__<SECTION>__<KEY>` with the service's prefix
(for example `REPORT_PIPELINE__DATABASE__URL`). Environment wins over the file.

`ServiceConfig` holds the sections every service has (broker, database, gRPC, telemetry); a
service subclasses it with its own sections and defaults and loads it with `load_config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from brokerline.core.settings import LOWERCASE
from brokerline.core.urls import check_scheme, redact_text
from brokerline.nats.settings import NatsSettings
from brokerline.pulsar.settings import PulsarSettings

DEFAULT_CONFIG = Path("configs/config.yaml")


class ConfigError(Exception):
    """The configuration is invalid; the message names the setting and the fix."""


class _Section(BaseModel):
    """A configuration section: an unknown key is an error naming it."""

    model_config = ConfigDict(extra="forbid")


class SubscriberConfig(_Section):
    """Defaults for every subscription of the broker server."""

    max_deliveries: int = Field(5, ge=1)
    concurrency: int = Field(16, ge=1)
    backoff_initial: float = Field(0.5, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    ack_wait: float = Field(30.0, gt=0)
    max_message_bytes: int = Field(1024 * 1024, ge=1)  # larger ones are dead-lettered


class BrokerConfig(_Section):
    type: str = "memory"  # a service sets its own default
    # One address or a comma-separated list for the chosen type. `serve` refuses to start
    # without one (or the type's own server list): a broker started by each process would be
    # private to it, and in production every pod would keep its own events.
    address: str = ""
    # true: with no address, start a local broker (pulsar-lite or nats-server) on a free
    # loopback port, as `dev`, `demo` and the tests do; for development only
    embedded: bool = False
    group: str = Field("saver", min_length=1)  # the saver's consumer group (subscription)
    connect_attempts: int = Field(5, ge=1, le=100)  # bounded retries at start, then give up
    subscriber: SubscriberConfig = Field(default_factory=SubscriberConfig)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    pulsar: PulsarSettings = Field(default_factory=PulsarSettings)

    @field_validator("type")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("address")
    @classmethod
    def _address_fits_the_type(cls, address: str, info: ValidationInfo) -> str:
        kind = URL_KIND.get(info.data.get("type", ""))
        if kind is not None:
            for url in address.split(","):
                check_scheme(url.strip(), kind)
        return address

    def addresses(self) -> list[str]:
        return [a.strip() for a in self.address.split(",") if a.strip()]


#: the kind of URL each broker type's addresses are
URL_KIND = {"nats": "NATS", "jetstream": "NATS", "pulsar": "Pulsar"}


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///data/service.db"  # a service sets its own default
    echo: bool = False
    create_tables: bool = True  # production uses migrations: set false there

    @field_validator("url")
    @classmethod
    def _async_database_url(cls, value: str) -> str:
        # checked at load, so a bad URL fails every role at once, not at first use
        if value.split("://", 1)[0] in ASYNC_DRIVERS and _port_parses(value):
            return value
        return _checked_by_sqlalchemy(value)


def _port_parses(url: str) -> bool:
    try:
        port = urlsplit(url).port  # raises on a port that is not a number
    except ValueError:
        return False
    return port is None or port > 0


#: the async drivers this template ships, accepted without loading SQLAlchemy (about 15 MB
#: that a role which never opens the database does not need); any other URL gets SQLAlchemy's
#: full check, which loads the dialect it names
ASYNC_DRIVERS = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})


def _checked_by_sqlalchemy(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ValueError(
            "not a database URL; use e.g. sqlite+aiosqlite:///data/app.db or "
            "postgresql+asyncpg://user@host/db"
        ) from None
    try:
        is_async = bool(getattr(url.get_dialect(), "is_async", False))
    except Exception:
        raise ValueError(
            f"unknown database {url.drivername!r}; use sqlite+aiosqlite or postgresql+asyncpg"
        ) from None
    if not is_async:
        raise ValueError(
            f"{url.drivername!r} is not an async driver; use sqlite+aiosqlite:// or "
            "postgresql+asyncpg://"
        )
    return value


class GrpcConfig(_Section):
    address: str = "127.0.0.1:9000"  # where `serve report` listens and `publish` connects
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1)

    @field_validator("address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("write it as host:port, e.g. 127.0.0.1:9000 or [::]:9000")
        return value.strip()


class TelemetryConfig(_Section):
    """Traces, metrics, health probes and the log format (README: Observability)."""

    # where spans go: none (ids still reach the logs), console (stdout), otlp (a collector),
    # file (one JSON object a line at `file`, for tests and offline debugging)
    exporter: Annotated[Literal["none", "console", "otlp", "file"], LOWERCASE] = "none"
    endpoint: str = ""  # OTLP collector; empty: the exporter's default (localhost:4317/4318)
    protocol: Annotated[Literal["grpc", "http/protobuf"], LOWERCASE] = "grpc"
    file: str = "data/spans.jsonl"
    sampling_ratio: float = Field(1.0, ge=0, le=1)  # of new traces; children follow the parent
    service_name: str = ""  # empty: <name>-<role>, e.g. report-pipeline-saver
    service_version: str = ""  # empty: the installed package version
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for the orchestrator's probes
    metrics_port: int = Field(0, ge=0, le=65535)  # /metrics, /healthz, /readyz; 0: off
    health_interval: float = Field(5.0, gt=0)  # seconds between broker/database checks
    log_format: Annotated[Literal["text", "json"], LOWERCASE] = "text"


def _uppercase(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_uppercase)
]


class ServiceConfig(_Section):
    """The settings every service has; a service's `AppConfig` adds its own sections."""

    name: str = Field("service", min_length=1)
    log_level: LogLevel = "INFO"  # LOG_LEVEL
    shutdown_timeout: float = Field(15.0, gt=0)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    grpc: GrpcConfig = Field(default_factory=GrpcConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)


#: well-known environment names -> dotted setting paths (several names may feed one path;
#: where two are set, the one listed later wins)
ENVIRONMENT: dict[str, str] = {
    "COZE_MQ_TYPE": "broker.type",
    "BROKER_TYPE": "broker.type",
    "MQ_NAME_SERVER": "broker.address",
    "BROKER_ADDRESS": "broker.address",
    "BROKER_EMBEDDED": "broker.embedded",
    "NATS_SERVER_URL": "broker.nats.servers",
    "NATS_JWT_TOKEN": "broker.nats.jwt_token",
    "NATS_NKEY_SEED": "broker.nats.nkey_seed",
    "NATS_CREDENTIALS": "broker.nats.credentials",
    "NATS_USERNAME": "broker.nats.user",
    "NATS_PASSWORD": "broker.nats.password",
    "NATS_TOKEN": "broker.nats.token",
    "NATS_TLS_CA_FILE": "broker.nats.tls.ca_file",
    "NATS_STREAM_REPLICAS": "broker.nats.stream.replicas",
    "PULSAR_JWT_TOKEN": "broker.pulsar.jwt_token",
    "PULSAR_TLS_TRUST_CERTS_FILE": "broker.pulsar.tls.ca_file",
    "DATABASE_URL": "database.url",
    "GRPC_ADDRESS": "grpc.address",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "telemetry.log_format",
    "OTEL_TRACES_EXPORTER": "telemetry.exporter",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "telemetry.endpoint",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "telemetry.protocol",
    "OTEL_TRACES_SAMPLER_ARG": "telemetry.sampling_ratio",
    "OTEL_SERVICE_NAME": "telemetry.service_name",
    "SERVICE_VERSION": "telemetry.service_version",
    "OTEL_EXPORTER_PROMETHEUS_HOST": "telemetry.metrics_host",
    "OTEL_EXPORTER_PROMETHEUS_PORT": "telemetry.metrics_port",
    "TELEMETRY_FILE": "telemetry.file",
}

#: settings that take a comma-separated list in the environment
LIST_SETTINGS = {"broker.nats.servers", "broker.pulsar.service_urls", "broker.nats.stream.subjects"}


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _env_value(path: str, raw: str) -> Any:
    if path in LIST_SETTINGS:
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def environment_overrides(environ: Mapping[str, str], env_prefix: str) -> dict[str, Any]:
    """The nested settings that `environ` sets, by well-known and by generic names."""
    data: dict[str, Any] = {}
    for name, path in ENVIRONMENT.items():
        if environ.get(name, "") != "":
            _set_path(data, path, _env_value(path, environ[name]))
    # NATS_USE_JETSTREAM=true turns a NATS broker type into JetStream (as in the NATS guide)
    broker = data.get("broker", {})
    use_jetstream = environ.get("NATS_USE_JETSTREAM", "").strip().lower() in ("1", "true", "yes")
    if use_jetstream and broker.get("type", "").strip().lower() == "nats":
        broker["type"] = "jetstream"
    for name, raw in environ.items():
        if name.startswith(env_prefix) and raw != "":
            path = name[len(env_prefix) :].lower().replace("__", ".")
            _set_path(data, path, _env_value(path, raw))
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


#: settings whose value is never repeated in an error message
SECRET_WORDS = ("token", "password", "seed", "credentials", "url")


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]  # list indexes add nothing
    where = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown setting {where!r}; check its spelling against the README table"
    names = [name for name, path in ENVIRONMENT.items() if path == where]
    setting = f"{where!r} ({', '.join(names)})" if names else repr(where)
    message = str(first["msg"]).removeprefix("Value error, ")
    value = first.get("input")
    shown = ""
    if isinstance(value, str | int | float) and not any(w in where for w in SECRET_WORDS):
        shown = f" (got {value!r})"
    return redact_text(f"{source}: setting {setting} is invalid{shown}: {message}")


Config = TypeVar("Config", bound=ServiceConfig)


def load_config(
    model: type[Config],
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    env_prefix: str,
) -> Config:
    """Read the YAML file (if it exists), apply the environment, then `overrides`."""
    environ = os.environ if environ is None else environ
    config_path = Path(path) if path else Path(environ.get("CONFIG_FILE", DEFAULT_CONFIG))
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{config_path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it "
                "as UTF-8"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(
                f"{config_path} is not valid YAML ({problem}{where}); fix its syntax"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path} must hold a mapping of sections, not a list or value")
        data = loaded
    elif path:
        raise ConfigError(f"config file {config_path} does not exist; pass an existing file")
    data = _merge(data, environment_overrides(environ, env_prefix))
    if overrides:
        data = _merge(data, overrides)
    source = f"configuration ({config_path} + environment)"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
