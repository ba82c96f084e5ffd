"""The sample's commands: `publish` reports over gRPC, `count` stored rows, `demo` it all."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from brokerline.cli.arguments import positive_seconds, whole_number
from brokerline.core import known_types
from brokerline.logs import configure_logging
from brokerline.telemetry import service_name, setup_telemetry

from .serve import load


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

    configure_logging("WARNING")
    raise SystemExit(run_demo(args.broker, args.count, args.workdir))


def add_commands(sub: Any) -> None:
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
