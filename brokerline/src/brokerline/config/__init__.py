"""Typed configuration on pydantic-settings: a YAML file, then environment variables on top.

Every setting has a dotted path (`broker.type`) and can be set from the environment in two
ways: by a well-known name from the table `ENVIRONMENT` (such as `BROKER_TYPE`,
`BROKER_ADDRESS`, `PULSAR_JWT_TOKEN`, `NATS_SERVER_URL`; `COZE_MQ_TYPE` and `MQ_NAME_SERVER`
are accepted too), or generically as `<PREFIX>__<SECTION>__<KEY>` with the service's prefix
(for example `REPORT_PIPELINE__DATABASE__URL`). Environment wins over the file; a list
setting takes a comma-separated value there.

`ServiceConfig` holds the sections every service has (broker, database, gRPC, HTTP, telemetry); a
service subclasses it with its own sections and defaults and loads it with `load_config`,
which gives pydantic-settings the sources: its YAML file source, its environment source with
the prefix and `__` nesting, and a source of the well-known names.
"""


from brokerline.config.loader import SECRET_WORDS, load_config
from brokerline.config.sections import (
    ASYNC_DRIVERS,
    DEFAULT_CONFIG,
    URL_KIND,
    BrokerConfig,
    ConfigError,
    DatabaseConfig,
    GrpcConfig,
    HttpConfig,
    LogLevel,
    ServiceConfig,
    SubscriberConfig,
    TelemetryConfig,
)
from brokerline.config.sources import ENVIRONMENT

__all__ = [
    "ASYNC_DRIVERS",
    "DEFAULT_CONFIG",
    "ENVIRONMENT",
    "SECRET_WORDS",
    "URL_KIND",
    "BrokerConfig",
    "ConfigError",
    "DatabaseConfig",
    "GrpcConfig",
    "HttpConfig",
    "LogLevel",
    "ServiceConfig",
    "SubscriberConfig",
    "TelemetryConfig",
    "load_config",
]
