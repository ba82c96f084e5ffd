"""Where settings come from besides the defaults: the environment (well-known names and the
service's prefixed names) and the YAML file, as pydantic-settings sources."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import (
    BaseModel,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    YamlConfigSettingsSource,
)

from brokerline.config.sections import ConfigError

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
    "NATS_TLS_CERT_FILE": "broker.nats.tls.cert_file",
    "NATS_TLS_KEY_FILE": "broker.nats.tls.key_file",
    "NATS_STREAM_REPLICAS": "broker.nats.stream.replicas",
    "NATS_STREAM_DUPLICATE_WINDOW": "broker.nats.stream.duplicate_window",
    "PULSAR_JWT_TOKEN": "broker.pulsar.jwt_token",
    "PULSAR_TLS_TRUST_CERTS_FILE": "broker.pulsar.tls.ca_file",
    "PULSAR_TLS_CERT_FILE": "broker.pulsar.tls.cert_file",
    "PULSAR_TLS_KEY_FILE": "broker.pulsar.tls.key_file",
    "DATABASE_URL": "database.url",
    "GRPC_ADDRESS": "grpc.address",
    "HTTP_ADDRESS": "http.address",
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
