"""`serve ROLE [--workers N]` and `dev`: run the service's servers until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from brokerline.cli.arguments import whole_number
from brokerline.cli.serve import run_role, serve_workers
from brokerline.core import known_types
from brokerline.factory import check_broker_config
from brokerline.logs import configure_logging

from ..conf import AppConfig, load_config
from ..containers import ROLES, Container, build_app

PACKAGE = "{{ cookiecutter.package_name }}"
log = logging.getLogger(PACKAGE)


def load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> AppConfig:
    config = load_config(args.config, overrides=overrides)
    configure_logging(config.log_level, config.telemetry.log_format)
    return config


def run(config: AppConfig, role: str) -> None:
    container = Container(config=config)
    asyncio.run(run_role(config, role, container, lambda: build_app(config, role, container)))


def cmd_serve(args: argparse.Namespace) -> None:
    config = load(args)
    if args.workers > 1:
        servers = ROLES[args.role]
        raise SystemExit(serve_workers(
            PACKAGE, args.config, args.role, args.workers, config,
            listens=[name.removesuffix("_server") for name in servers
                     if name in ("grpc_server", "http_server")],
            subscribes="broker_server" in servers,
        ))
    check_broker_config(config.broker)  # before any resource starts: fail in one sentence
    run(config, args.role)


def cmd_dev(args: argparse.Namespace) -> None:
    # a real broker type without an address gets a local broker: dev is one process
    config = load(args, {"broker": {"type": args.broker, "embedded": True}})
    log.info("dev mode: all services in one process on the %s broker", config.broker.type)
    run(config, "all")


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("role", choices=sorted(ROLES))
    serve.add_argument("--workers", type=whole_number(1), default=1, metavar="N",
                       help="N processes: subscribers in one consumer group, gRPC and HTTP "
                            "on one port each (SO_REUSEPORT); needs broker.address (on "
                            "Pulsar, Apache Pulsar: pulsar-lite refuses a second consumer "
                            "on a subscription)")
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="run every service in one process")
    dev.add_argument("--broker", default="memory", choices=known_types(),
                     help="broker type (default: memory); without an address, a local "
                          "broker of that type is started")
    dev.set_defaults(func=cmd_dev)
