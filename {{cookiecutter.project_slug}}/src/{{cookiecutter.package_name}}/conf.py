{%- set brokers = cookiecutter.brokers.replace(' ', '').split(',') -%}
{%- if 'pulsar' in brokers %}{% set default_broker = 'pulsar' %}
{%- elif 'jetstream' in brokers %}{% set default_broker = 'jetstream' %}
{%- elif 'nats' in brokers %}{% set default_broker = 'nats' %}
{%- elif 'kafka' in brokers %}{% set default_broker = 'kafka' %}
{%- else %}{% set default_broker = 'memory' %}{% endif -%}
"""Typed configuration: `configs/config.yaml`, then environment variables on top.

The sections every service has (broker, database, gRPC, HTTP, telemetry) and the environment
names (`BROKER_TYPE`, `BROKER_ADDRESS`, `DATABASE_URL`, `HTTP_ADDRESS`, ...) come from
`brokerline.config`; this module adds the service's own sections and defaults. Any setting
can also be set as
`{{ cookiecutter.package_name.upper() }}__<SECTION>__<KEY>`, e.g. `{{ cookiecutter.package_name.upper() }}__TOPICS__REPORT`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from brokerline import config
from brokerline.config import BrokerConfig, ConfigError, DatabaseConfig
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AppConfig", "ConfigError", "load_config"]

ENV_PREFIX = "{{ cookiecutter.package_name.upper() }}__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceBrokerConfig(BrokerConfig):
    type: str = "{{ default_broker }}"


class ServiceDatabaseConfig(DatabaseConfig):
    url: str = "sqlite+aiosqlite:///data/{{ cookiecutter.package_name }}.db"


class TopicsConfig(_Section):
    report: str = Field("events.realtime-warehousing", min_length=1)
    user_report: str = Field("events.user-report", min_length=1)


{% if cookiecutter.include_sample -%}
class SaverConfig(_Section):
    """How the saver writes: batches of up to `batch_size` events, or `batch_delay_ms`."""

    batch_size: int = Field(256, ge=1)
    batch_delay_ms: float = Field(20.0, gt=0)


{% endif -%}
class AppConfig(config.ServiceConfig):
    name: str = Field("{{ cookiecutter.project_slug }}", min_length=1)
    broker: ServiceBrokerConfig = Field(default_factory=ServiceBrokerConfig)
    database: ServiceDatabaseConfig = Field(default_factory=ServiceDatabaseConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
{%- if cookiecutter.include_sample %}
    saver: SaverConfig = Field(default_factory=SaverConfig)
{%- endif %}


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AppConfig:
    """Read the YAML file (if it exists), apply the environment, then `overrides`."""
    return config.load_config(AppConfig, path, environ, overrides, env_prefix=ENV_PREFIX)
