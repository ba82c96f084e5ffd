"""The command line: serve a role, run everything in one process, post sample reports, demo.

    {{ cookiecutter.project_slug }} serve report|saver   one service (its servers and resources)
    {{ cookiecutter.project_slug }} dev                  report + saver in one process
    {{ cookiecutter.project_slug }} broker               a local broker in the foreground
    {{ cookiecutter.project_slug }} db upgrade|current   database migrations (Alembic)
    {{ cookiecutter.project_slug }} asyncapi             the AsyncAPI document of the service
    {{ cookiecutter.project_slug }} add-subscriber TOPIC Handler   scaffold a subscriber
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
import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from brokerline.app import App
{%- if cookiecutter.include_sample %}
from brokerline.cli.arguments import EXIT_USAGE, OneLineParser, positive_seconds, whole_number
{%- else %}
from brokerline.cli.arguments import EXIT_USAGE, OneLineParser, whole_number
{%- endif %}
from brokerline.factory import check_broker_config
from brokerline.config import ConfigError
from .conf import AppConfig, load_config
from .containers import ROLES, Container
from brokerline.cli.health import add_health_command
from brokerline.logs import configure_logging
from brokerline.server import Server
from brokerline.cli.startup import provided as provided  # re-exported: tests resolve providers with it
from brokerline.cli.startup import shutdown_interrupted, start_servers
from brokerline.telemetry import service_name, setup_telemetry
from .tool_commands import TOOL_ERRORS, add_tool_commands
from brokerline.core import BrokerError, known_types
from brokerline.core.embedded import embedded_broker
from brokerline.core.urls import redact_text

log = logging.getLogger("{{ cookiecutter.package_name }}")
#: failures that end in one `error: ...` sentence and exit code 2, without a traceback
EXPECTED_ERRORS: tuple[type[Exception], ...] = (ConfigError, BrokerError, OSError, *TOOL_ERRORS)


def setup_logging(level: str, fmt: str = "text") -> None:
    configure_logging(level, fmt)


def load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> AppConfig:
    config = load_config(args.config, overrides=overrides)
    setup_logging(config.log_level, config.telemetry.log_format)
    return config


async def run_role(config: AppConfig, role: str) -> None:
    telemetry = setup_telemetry(
        config.telemetry, service_name(config.name, role), distribution=config.name
    )
    container: Any = Container(config=config)  # with async resources, providers return awaitables
    servers: list[Server] | None = None
    try:
        servers = await start_servers(container, ROLES[role])
        if servers is not None:
            await App(f"{config.name}:{role}", servers, config.shutdown_timeout).run()
    finally:
        if servers is None:
            await shutdown_interrupted(container)
        else:
            await container.shutdown_resources()
        await asyncio.to_thread(telemetry.shutdown)  # flush the last spans


def cmd_serve(args: argparse.Namespace) -> None:
    config = load(args)
    if args.workers > 1:
        raise SystemExit(serve_workers(args, config))
    check_broker_config(config.broker)  # before any resource starts: fail in one sentence
    asyncio.run(run_role(config, args.role))


def serve_workers(args: argparse.Namespace, config: AppConfig) -> int:
    """Run `args.workers` processes of one role in one consumer group; forward SIGTERM/SIGINT.

    Every worker joins the configured group, so the broker shares the messages among them.
    They need a broker they can all reach (broker.address): an embedded one per process would
    not be shared. On Pulsar this needs Apache Pulsar: pulsar-lite refuses a second consumer
    on a subscription. Returns the first non-zero exit code of the workers (0 if none).
    """
    if args.role != "saver":
        raise ConfigError(
            "--workers is for `serve saver`; scale `serve report` behind a load balancer"
        )
    if config.broker.type == "memory" or not config.broker.address:
        raise ConfigError(
            "--workers needs a shared broker: set broker.address (BROKER_ADDRESS) to a running "
            "nats, jetstream or pulsar broker; an embedded or memory broker is one per process"
        )
    argv = [sys.executable, "-m", __name__.rpartition(".")[0]]
    if args.config:
        argv += ["--config", args.config]
    argv += ["serve", args.role]
    children = [subprocess.Popen(argv) for _ in range(args.workers)]
    log.info("started %d %s workers: %s", len(children), args.role,
             ", ".join(str(c.pid) for c in children))

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)


def cmd_dev(args: argparse.Namespace) -> None:
    # a real broker type without an address gets a local broker: dev is one process
    config = load(args, {"broker": {"type": args.broker, "embedded": True}})
    log.info("dev mode: all services in one process on the %s broker", config.broker.type)
    asyncio.run(run_role(config, "all"))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def cmd_broker(args: argparse.Namespace) -> None:
    """Run the embedded broker until SIGINT/SIGTERM; then stop it and remove a temp store."""
    setup_logging("INFO")
    signal.signal(signal.SIGTERM, _interrupt)
    server = embedded_broker(args.type, store=args.store)
    try:
        server.start()
        print(f"{args.type} broker listening at {server.url} (store {server.store}; "
              "Ctrl-C to stop)", flush=True)
        assert server.process is not None
        code = server.process.wait()
        if code not in (0, -signal.SIGINT, -signal.SIGTERM):  # not stopped, as by Ctrl-C
            raise BrokerError(f"the {args.type} broker exited with code {code}; see "
                              f"{server.log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut cleanup short
        server.cleanup()
{%- if cookiecutter.include_sample %}


def cmd_publish(args: argparse.Namespace) -> None:
    from .sample_client import post_reports

    config = load(args)
    telemetry = setup_telemetry(
        config.telemetry, service_name(config.name, "client"), distribution=config.name
    )
    target = args.target or config.grpc.address
    ok = asyncio.run(post_reports(target, args.count, args.concurrency, show_progress=True))
    telemetry.shutdown()
    if ok < args.count:
        raise SystemExit(1)


def cmd_count(args: argparse.Namespace) -> None:
    from .sample_client import count_rows

    config = load(args)
    rows = asyncio.run(count_rows(config.database, args.expect, args.timeout))
    print(rows)
    if args.expect is not None and rows < args.expect:
        # exit 1, as `publish` and `health` do for "not there": a script must not read it as done
        print(f"error: {rows} of the {args.expect} expected rows were stored within "
              f"{args.timeout:g}s; is the saver running? wait longer with --timeout",
              file=sys.stderr)
        raise SystemExit(1)


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    setup_logging("WARNING")
    raise SystemExit(run_demo(args.broker, args.count, args.workdir))
{%- endif %}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="{{ cookiecutter.project_slug }}", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config file (default: configs/config.yaml, if present)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("role", choices=sorted(ROLES))
    serve.add_argument("--workers", type=whole_number(1), default=1, metavar="N",
                       help="saver only: N processes in one consumer group (needs "
                            "broker.address; on Pulsar, Apache Pulsar: pulsar-lite refuses "
                            "a second consumer on a subscription)")
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="run every service in one process")
    dev.add_argument("--broker", default="memory", choices=known_types(),
                     help="broker type (default: memory); without an address, a local "
                          "broker of that type is started")
    dev.set_defaults(func=cmd_dev)

    broker = sub.add_parser("broker", help="run an embedded broker in the foreground")
    broker.add_argument("--type", default="pulsar" if "pulsar" in known_types() else "nats",
                        choices=[t for t in known_types() if t != "memory"] or ["nats"])
    broker.add_argument("--store", help="store directory (default: a temporary one)")
    broker.set_defaults(func=cmd_broker)
{%- if cookiecutter.include_sample %}

    publish = sub.add_parser("publish", help="post sample reports over gRPC")
    publish.add_argument("--count", type=whole_number(1), default=1000)
    publish.add_argument("--concurrency", type=whole_number(1), default=32)
    publish.add_argument("--target", help="host:port of `serve report` (default: grpc.address)")
    publish.set_defaults(func=cmd_publish)

    count = sub.add_parser("count", help="print how many reports the saver stored")
    count.add_argument("--expect", type=whole_number(0),
                       help="wait until at least this many are stored")
    count.add_argument("--timeout", type=positive_seconds, default=60.0,
                       help="seconds --expect waits (default: 60); short of N, exit code 1")
    count.set_defaults(func=cmd_count)

    demo = sub.add_parser("demo", help="run broker, saver and report; post reports; compare")
    demo.add_argument("--broker", default=None, choices=known_types(),
                      help="broker type (default: the configured one)")
    demo.add_argument("--count", type=whole_number(1), default=1000)
    demo.add_argument("--workdir", default="data/demo", help="where the demo keeps its files")
    demo.set_defaults(func=cmd_demo)
{%- endif %}
    add_tool_commands(sub)
    add_health_command(sub, load_config)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except EXPECTED_ERRORS as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
