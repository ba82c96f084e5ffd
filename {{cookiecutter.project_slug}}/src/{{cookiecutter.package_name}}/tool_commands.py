"""The commands for working on and operating the service: add-subscriber, db, asyncapi.

`cli.parser()` adds them with `add_tool_commands`; their expected failures raise one of
`TOOL_ERRORS`, which the command line prints as one `error: ...` sentence (exit code 2).
Alembic is imported by the `db` commands only, not by every process that loads the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from .conf import load_config
from .scaffold import SIMPLE_KINDS, ScaffoldError


class ToolError(Exception):
    """A tool command failed (e.g. a migration); the message names what and what to do."""


TOOL_ERRORS: tuple[type[Exception], ...] = (ToolError, ScaffoldError)


def cmd_add_subscriber(args: argparse.Namespace) -> None:
    from .scaffold import add_subscriber

    written = add_subscriber(args.topic, args.handler, args.message, args.group)
    for path in written:
        print(f"wrote {path}")
    print(f"next: fill in {written[0].name}, then run the tests (pytest {written[-1].name})")


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    from brokerline.sql.migrations import MigrationError, upgrade

    from .migrations import PROJECT

    config = load_config(args.config)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        upgrade(PROJECT, config.database, args.revision)
    except MigrationError as exc:
        raise ToolError(str(exc)) from None
    print(f"database upgraded to {args.revision}")


def cmd_db_current(args: argparse.Namespace) -> None:
    from brokerline.sql.migrations import MigrationError, describe, revisions

    from .migrations import PROJECT

    config = load_config(args.config)
    try:
        print(describe(asyncio.run(revisions(PROJECT, config.database)), PROJECT.program))
    except MigrationError as exc:
        raise ToolError(str(exc)) from None


def cmd_asyncapi(args: argparse.Namespace) -> None:
    from brokerline.asyncapi import build_document, render
    from brokerline.catalog import read_catalog

    from .containers import Container

    config = load_config(args.config)
    text = render(build_document(config, asyncio.run(read_catalog(Container(config=config)))), args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def add_tool_commands(sub: Any) -> None:
    """Add the commands to the subparsers `sub` of the main parser."""
    add = sub.add_parser(
        "add-subscriber", help="scaffold a subscriber: handler, registration and test"
    )
    add.add_argument("topic", help="the topic to subscribe to, e.g. orders.created")
    add.add_argument("handler", help="the handler class, CamelCase, e.g. OrderCreatedHandler")
    add.add_argument(
        "--message", default="pydantic",
        help=f"the message type: a protobuf message of api/ (e.g. events.v1.UserReportData) "
        f"or one of {', '.join(SIMPLE_KINDS)} (default: pydantic, a model stub to fill in)",
    )
    add.add_argument("--group", help="consumer group (default: broker.group of the config)")
    add.set_defaults(func=cmd_add_subscriber)

    db = sub.add_parser("db", help="database migrations (Alembic)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply the migrations (default: up to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)
    current = db_sub.add_parser("current", help="the revision the database is at")
    current.set_defaults(func=cmd_db_current)

    spec = sub.add_parser("asyncapi", help="print the AsyncAPI document of the service")
    spec.add_argument("--format", choices=["yaml", "json"], default="yaml")
    spec.add_argument("--output", "-o", help="write to this file instead of stdout")
    spec.set_defaults(func=cmd_asyncapi)
