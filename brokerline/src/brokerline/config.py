"""Typed configuration on pydantic-settings: a YAML file, then environment variables on top.

Every setting has a dotted path (`broker.type`) and can be set from the environment in two
ways: by a well-known name from the table `ENVIRONMENT` (such as `BROKER_TYPE`,
`BROKER_ADDRESS`, `PULSAR_JWT_TOKEN`, `NATS_SERVER_URL`; `COZE_MQ_TYPE` and `MQ_NAME_SERVER`
are accepted too), or generically as `<PREFIX>__<SECTION>__<KEY>` with the service's prefix
(for example `REPORT_PIPELINE__DATABASE__URL`). Environment wins over the file; a list
setting takes a comma-separated value there.

`ServiceConfig` holds the sections every service has (broker, database, gRPC, telemetry); a
service subclasses it with its own sections and defaults and loads it with `load_config`,
which gives pydantic-settings the sources: its YAML file source, its environment source with
the prefix and `__` nesting, and a source of the well-known names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_origin
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
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
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


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _field_at(model: type[BaseModel], path: str) -> FieldInfo | None:
    """The field a dotted path names in `model`, or None if it names none."""
    node: Any = model
    field: FieldInfo | None = None
    for part in path.split("."):
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None
        field = node.model_fields.get(part)
        if field is None:
            return None
        node = field.annotation
    return field


def _takes_a_list(field: FieldInfo | None) -> bool:
    return field is not None and get_origin(field.annotation) is list


def _comma_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


class PrefixedEnvironment(EnvSettingsSource):
    """The generic names, `<PREFIX>__<SECTION>__<KEY>` in any case, read from `environ`.

    Two changes to pydantic-settings' environment source: a list also takes the comma form
    (`nats://a:4222,nats://b:4222`) besides JSON, and a prefixed name that matches no setting
    is kept, so that validation names the misspelling instead of it being ignored.
    """

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str], env_prefix: str
    ) -> None:
        self._environ = environ  # before the base __init__, which calls _load_env_vars
        super().__init__(
            settings_cls,
            case_sensitive=False,
            env_prefix=env_prefix,
            env_nested_delimiter="__",
            env_ignore_empty=True,
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # the mapping given to load_config, not os.environ (the hook dotenv's source uses too)
        return {name.lower(): value for name, value in self._environ.items() if value != ""}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        if _takes_a_list(field) and isinstance(value, str) and not value.lstrip().startswith("["):
            return _comma_list(value)
        return super().decode_complex_value(field_name, field, value)

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:  # JSON that does not parse; its value may be a secret: not shown
            name = f"{self.env_prefix}{field_name}".upper()
            raise ConfigError(
                f"the environment variable {name} (or one under it) is not valid JSON; set one "
                f"setting a variable instead, as {name}__<KEY>"
            ) from None

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        prefix = self.env_prefix.lower()
        for name, raw in self.env_vars.items():
            if name.startswith(prefix) and raw is not None:
                path = name[len(prefix) :].split(self.env_nested_delimiter or "__")
                if path[0] and path[0] not in self.settings_cls.model_fields:
                    _set_path(data, ".".join(path), raw)
        return data


def _is_true(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes")


class WellKnownEnvironment(PydanticBaseSettingsSource):
    """The names of `ENVIRONMENT` (BROKER_TYPE, NATS_SERVER_URL, ...) and NATS_USE_JETSTREAM.

    A source of its own rather than validation aliases: most of these settings sit in the
    broker plugins' sections, several names feed one setting, and an alias would also rename
    the key in the YAML file.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ maps whole paths, not single fields

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, path in ENVIRONMENT.items():
            raw = self._environ.get(name, "")
            if raw != "":
                listed = _takes_a_list(_field_at(self.settings_cls, path))
                _set_path(data, path, _comma_list(raw) if listed else raw)
        # NATS_USE_JETSTREAM=true turns a NATS broker type into JetStream (as in the NATS guide)
        broker = data.get("broker", {})
        jetstream = _is_true(self._environ.get("NATS_USE_JETSTREAM", ""))
        if jetstream and str(broker.get("type", "")).strip().lower() == "nats":
            broker["type"] = "jetstream"
        return data


class YamlFile(YamlConfigSettingsSource):
    """The YAML file; one that is not UTF-8, not YAML or not a mapping is one sentence."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls, yaml_file=path, yaml_file_encoding="utf-8")

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        # read whole here, not streamed by the base: a decoding error then tells the byte's
        # place in the file, not in a buffered chunk of it
        try:
            loaded = yaml.safe_load(file_path.read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{file_path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it "
                "as UTF-8"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(
                f"{file_path} is not valid YAML ({problem}{where}); fix its syntax"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file_path} must hold a mapping of sections, not a list or value")
        return loaded


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


def _config_file(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """The file to read: `path`, else CONFIG_FILE, else the default; checked if named."""
    chosen = path or environ.get("CONFIG_FILE") or DEFAULT_CONFIG
    config_path = Path(chosen).expanduser()
    if config_path.is_dir():
        raise ConfigError(f"config file {config_path} is a directory; pass a YAML file")
    # pydantic-settings skips a missing file, right for a CONFIG_FILE or default that is not
    # there (the environment alone configures); a file named by the caller must exist
    if path and not config_path.exists():
        raise ConfigError(f"config file {config_path} does not exist; pass an existing file")
    return config_path


Config = TypeVar("Config", bound=ServiceConfig)


def load_config(
    model: type[Config],
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    env_prefix: str,
) -> Config:
    """Read the YAML file (if it exists), apply the environment, then `overrides`.

    Precedence, highest first: `overrides`, the generic `<env_prefix>SECTION__KEY` names,
    the well-known names of `ENVIRONMENT`, the file, the model's defaults. `environ` defaults
    to os.environ; its CONFIG_FILE names the file when `path` does not.
    """
    environ = os.environ if environ is None else environ
    config_path = _config_file(path, environ)
    sources: tuple[PydanticBaseSettingsSource, ...] = (
        InitSettingsSource(model, init_kwargs=dict(overrides or {})),
        PrefixedEnvironment(model, environ, env_prefix),
        WellKnownEnvironment(model, environ),
        YamlFile(model, config_path),
    )
    source = f"configuration ({config_path} + environment)"
    try:
        # sources chosen per call (environ, file, prefix), which the class-level
        # settings_customise_sources cannot see; `_build_sources` is BaseSettings' parameter
        # for that (pydantic-settings 2.13+), merged by it in the order given, strongest first
        return model(_build_sources=(sources, {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    except SettingsError as exc:  # names the field and the source, never the value
        raise ConfigError(f"{source}: {exc}; check that setting's value") from None
