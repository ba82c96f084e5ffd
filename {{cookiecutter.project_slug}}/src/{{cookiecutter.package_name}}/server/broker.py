"""The broker server: which handler serves which topic (the one place subscribers register)."""

from __future__ import annotations

{% if cookiecutter.include_sample -%}
from dataclasses import replace

{% endif -%}
from brokerline.core import Broker
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
    # The saver batches its writes: one handler in flight per batch slot fills a batch, and
    # twice that lets the next batch fill while the previous one is being written. Its
    # inserts are idempotent and order-free, so same-key messages need not wait in line.
    # Its subscription stays shared (the default): `serve saver --workers N` needs it.
    saver_options = replace(
        server.default_options, concurrency=2 * config.saver.batch_size, ordered=False
    )
    server.register(config.topics.report, saver.save_event_report, group=group,
                    options=saver_options)
    server.register(config.topics.user_report, saver.save_user_report, group=group,
                    options=saver_options)
{%- else %}
    # server.register("events.something", MyHandler().handle, group=group)
    del group
{%- endif %}
    return server
