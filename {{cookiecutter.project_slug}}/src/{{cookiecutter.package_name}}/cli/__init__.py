"""The command line: serve a role, run everything in one process, tools{% if cookiecutter.include_sample %}, the sample{% endif %}.

    {{ cookiecutter.project_slug }} serve report|saver   one service (its servers and resources)
    {{ cookiecutter.project_slug }} dev                  report + saver in one process
    {{ cookiecutter.project_slug }} broker               a local broker in the foreground
    {{ cookiecutter.project_slug }} db upgrade|current   database migrations (Alembic)
    {{ cookiecutter.project_slug }} asyncapi             the AsyncAPI document of the service
    {{ cookiecutter.project_slug }} openapi              the OpenAPI document of its HTTP/JSON API
    {{ cookiecutter.project_slug }} add-subscriber TOPIC Handler   scaffold a subscriber
    {{ cookiecutter.project_slug }} health               ask a running service whether it is ready
{%- if cookiecutter.include_sample %}
    {{ cookiecutter.project_slug }} publish --count N    post N sample reports over gRPC
    {{ cookiecutter.project_slug }} count                rows the saver has stored
    {{ cookiecutter.project_slug }} demo                 broker + saver + report + 1000 reports
{%- endif %}

`serve` needs a running broker (broker.address); only `dev`, `demo` and `broker` start a local
one. Expected failures (bad arguments or config, no or unreachable broker, database) end with
one sentence on stderr and exit code 2, without a traceback. SIGINT or SIGTERM stop a service at
any time, start-up connection retries included.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from brokerline.cli.arguments import OneLineParser
from brokerline.cli.broker import add_broker_command
from brokerline.cli.entry import run_cli
from brokerline.cli.health import add_health_command
from brokerline.cli.tools import add_tool_commands
from brokerline.scaffold import ServicePackage

from ..conf import AppConfig, load_config
from ..containers import Container
from . import {% if cookiecutter.include_sample %}sample, {% endif %}serve

PROGRAM = "{{ cookiecutter.project_slug }}"
#: the package add-subscriber extends, in the project checkout of an editable install
PACKAGE = ServicePackage("{{ cookiecutter.package_name }}", Path(__file__).resolve().parents[1])


def new_container(config: AppConfig) -> Container:
    return Container(config=config)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROGRAM, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config file (default: configs/config.yaml, if present)")
    sub = p.add_subparsers(dest="command", required=True)
    serve.add_commands(sub)
    add_broker_command(sub)
{%- if cookiecutter.include_sample %}
    sample.add_commands(sub)
{%- endif %}
    add_tool_commands(sub, PACKAGE, PROGRAM, load_config, new_container)
    add_health_command(sub, load_config)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(parser(), argv)
