"""The broker server: which handler serves which topic (the one place subscribers register)."""

from __future__ import annotations

{% if cookiecutter.include_sample -%}
from dataclasses import replace

from brokerline.core import BatchOptions, Broker
{%- else -%}
from brokerline.core import Broker
{%- endif %}
from brokerline.factory import subscribe_options, subscription_overrides
from brokerline.server.broker import BrokerServer

from ..conf import AppConfig
{%- if cookiecutter.include_sample %}
from ..service.saver import SaverService
{%- endif %}


{% if cookiecutter.include_sample -%}
def new_broker_server(broker: Broker, config: AppConfig, saver: SaverService) -> BrokerServer:
{%- else -%}
def new_broker_server(broker: Broker, config: AppConfig) -> BrokerServer:
{%- endif %}
    # broker.subscriber is every subscription's default; broker.subscriptions.<topic> sets a
    # topic's own subscription_type / initial_position over what its registration passes
    server = BrokerServer(
        broker, subscribe_options(config.broker), subscription_overrides(config.broker)
    )
    group = config.broker.group
{%- if cookiecutter.include_sample %}
    # The saver is a batch subscriber: one handler call and one transaction per batch of up
    # to saver.batch_size events (or what arrived within saver.batch_delay_ms). Two batches
    # in flight let the next one be decoded while the previous one is written. Its
    # subscription stays shared (the default): `serve saver --workers N` needs it.
    batch = BatchOptions(
        max_size=config.saver.batch_size, max_wait=config.saver.batch_delay_ms / 1000
    )
    saver_options = replace(server.default_options, concurrency=2)
    server.register_batch(config.topics.report, saver.save_event_reports, group=group,
                          options=saver_options, batch=batch)
    server.register_batch(config.topics.user_report, saver.save_user_reports, group=group,
                          options=saver_options, batch=batch)
{%- else %}
    # server.register("events.something", MyHandler().handle, group=group)
    del group
{%- endif %}
    return server
