"""Which handler serves which topic: the one place subscribers are registered."""

from __future__ import annotations

from ..conf import AppConfig
{%- if cookiecutter.include_sample %}
from ..service.saver import SaverService
{%- endif %}
from .broker import BrokerServer


def register_subscribers(
    server: BrokerServer,
    config: AppConfig,
{%- if cookiecutter.include_sample %}
    saver: SaverService,
{%- endif %}
) -> BrokerServer:
    group = config.broker.group
{%- if cookiecutter.include_sample %}
    server.register(config.topics.report, saver.save_event_report, group=group)
    server.register(config.topics.user_report, saver.save_user_report, group=group)
{%- else %}
    # server.register("events.something", my_service.handle_something, group=group)
    del group
{%- endif %}
    return server
