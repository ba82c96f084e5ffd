"""The configuration sections every service has, and `ServiceConfig`, which holds them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from brokerline.core.base import InitialPosition, SubscriptionType
from brokerline.core.settings import LOWERCASE
from brokerline.core.urls import check_scheme
from brokerline.nats.settings import NatsSettings
from brokerline.pulsar.settings import CUMULATIVE_ACK_TYPES, PulsarSettings

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
    # Shared by default: `serve saver --workers N` runs N consumers in one group, and only a
    # shared type spreads the messages over them (exclusive refuses the second worker,
    # failover keeps all but one idle). Pulsar only; NATS and JetStream groups are shared.
    subscription_type: Annotated[SubscriptionType, LOWERCASE] = SubscriptionType.SHARED
    # where a new group starts on a topic that already holds messages (Pulsar, JetStream)
    initial_position: Annotated[InitialPosition, LOWERCASE] = InitialPosition.EARLIEST


class SubscriptionOverride(_Section):
    """One subscription's own type and start, over `broker.subscriber` (None: that value)."""

    subscription_type: Annotated[SubscriptionType | None, LOWERCASE] = None
    initial_position: Annotated[InitialPosition | None, LOWERCASE] = None

    def changes(self) -> dict[str, SubscriptionType | InitialPosition]:
        """The `SubscribeOptions` fields this override sets."""
        return {name: value for name, value in self if value is not None}


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
    # per topic (as the service registers it): its own subscription_type / initial_position
    subscriptions: dict[str, SubscriptionOverride] = Field(default_factory=dict)
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

    @model_validator(mode="after")
    def _subscription_types_fit_the_broker(self) -> BrokerConfig:
        for where, kind in self.subscription_types().items():
            if self.type in ("nats", "jetstream") and kind is not SubscriptionType.SHARED:
                raise ValueError(
                    f"{where} is {kind.value}, which {self.type} does not have (its groups are "
                    "always shared by their consumers); set it to shared or use pulsar"
                )
            if self.type == "pulsar" and self.pulsar.cumulative_ack and (
                kind not in CUMULATIVE_ACK_TYPES
            ):
                raise ValueError(
                    f"broker.pulsar.cumulative_ack needs exclusive or failover subscriptions, "
                    f"but {where} is {kind.value} (its consumers ack independently); set "
                    "cumulative_ack to false or that subscription_type to exclusive or failover"
                )
        return self

    def subscription_types(self) -> dict[str, SubscriptionType]:
        """Each configured subscription type, by the setting that chose it."""
        kinds = {"broker.subscriber.subscription_type": self.subscriber.subscription_type}
        for topic, override in self.subscriptions.items():
            if override.subscription_type is not None:
                kinds[f"broker.subscriptions.{topic}.subscription_type"] = (
                    override.subscription_type
                )
        return kinds

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
            # no user in the example: the message is redacted, which would mask it
            "not a database URL; use e.g. sqlite+aiosqlite:///data/app.db or "
            "postgresql+asyncpg://db-host:5432/app"
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


def host_and_port(value: str) -> str:
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("write it as host:port, e.g. 127.0.0.1:9000 or [::]:9000")
    return value.strip()


class GrpcConfig(_Section):
    address: str = "127.0.0.1:9000"  # where `serve report` listens and `publish` connects
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1)
    # several processes on one port (SO_REUSEPORT), the kernel spreading connections: set for
    # its workers by `serve --workers N`; off otherwise, so a port already taken is an error
    reuse_port: bool = False

    @field_validator("address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        return host_and_port(value)


class HttpConfig(_Section):
    """The HTTP/JSON transport (brokerline.server.http): the proto's google.api.http rules."""

    address: str = "127.0.0.1:8000"  # where `serve report` answers HTTP/JSON (HTTP_ADDRESS)
    max_body_bytes: int = Field(1024 * 1024, ge=1)  # a larger request body answers 413
    openapi_path: str = "/openapi.json"  # the OpenAPI 3 document; empty: not served
    ops_routes: bool = False  # also answer /healthz /readyz /metrics on this port
    reuse_port: bool = False  # as grpc.reuse_port (set by `serve --workers N`)

    @field_validator("address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        return host_and_port(value)


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


class ServiceConfig(BaseSettings):
    """The settings every service has; a service's `AppConfig` adds its own sections.

    A pydantic-settings model whose sources `load_config` chooses for each call (the file, an
    environment mapping, the service's prefix). Built directly, `AppConfig(...)` is its
    defaults and arguments only: nothing reads the process environment behind the caller.
    """

    # case-sensitive like every section below it: `Broker:` in the file is a misspelling
    model_config = SettingsConfigDict(extra="forbid", case_sensitive=True)

    name: str = Field("service", min_length=1)
    log_level: LogLevel = "INFO"  # LOG_LEVEL
    shutdown_timeout: float = Field(15.0, gt=0)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    grpc: GrpcConfig = Field(default_factory=GrpcConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # built directly: its arguments only (pydantic-settings would add os.environ without
        # the service's prefix); load_config brings the file and the environment itself
        return (init_settings,)
