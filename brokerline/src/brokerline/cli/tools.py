"""The commands for working on and operating a service: add-subscriber, db, asyncapi, openapi.

A service adds them with `add_tool_commands`, naming its package, its command and how to
build its container; their expected failures raise one of `TOOL_ERRORS`, which `run_cli`
prints as one `error: ...` sentence (exit code 2). Alembic is imported by the `db` commands
only, not by every process that loads the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brokerline.config import ServiceConfig
from brokerline.scaffold import SIMPLE_KINDS, ScaffoldError, ServicePackage

if TYPE_CHECKING:
    from brokerline.sql.migrations import Project


class ToolError(Exception):
    """A tool command failed (e.g. a migration); the message names what and what to do."""


TOOL_ERRORS: tuple[type[Exception], ...] = (ToolError, ScaffoldError)


def add_tool_commands(
    sub: Any,
    package: ServicePackage,
    program: str,
    load_config: Callable[[str | None], ServiceConfig],
    new_container: Callable[[Any], Any],
) -> None:
    """`add-subscriber`, `asyncapi`, `openapi` and `db`, added to the subparsers `sub`.

    `program` is the service's command (named in messages); `new_container(config)` is its
    composition root, unconnected: the catalog of what it subscribes to and publishes is read
    from it. The migrations are the project's `alembic.ini` and `alembic/`.
    """
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
    add.set_defaults(func=lambda args: cmd_add_subscriber(args, package))

    spec = sub.add_parser("asyncapi", help="print the AsyncAPI document of the service")
    spec.add_argument("--format", choices=["yaml", "json"], default="yaml")
    spec.add_argument("--output", "-o", help="write to this file instead of stdout")
    spec.set_defaults(
        func=lambda args: cmd_asyncapi(args, new_container(load_config(args.config)))
    )

    http = sub.add_parser(
        "openapi", help="print the OpenAPI 3 document of the service's HTTP/JSON API"
    )
    http.add_argument("--format", choices=["json", "yaml"], default="json")
    http.add_argument("--output", "-o", help="write to this file instead of stdout")
    http.set_defaults(
        func=lambda args: cmd_openapi(args, new_container(load_config(args.config)))
    )

    db = sub.add_parser("db", help="database migrations (Alembic)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply the migrations (default: up to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(
        func=lambda args: cmd_db_upgrade(args, load_config(args.config), package, program)
    )
    current = db_sub.add_parser("current", help="the revision the database is at")
    current.set_defaults(
        func=lambda args: cmd_db_current(load_config(args.config), package, program)
    )


def migrations_of(package: ServicePackage, program: str) -> Project:
    """The service's migrations: in the working directory (the Docker image), else in the
    project checkout that `src/<package>/` of an editable install is part of."""
    from brokerline.sql.migrations import Project

    return Project(program, package.directory.parents[1])


def cmd_add_subscriber(args: argparse.Namespace, package: ServicePackage) -> None:
    from brokerline.scaffold import add_subscriber

    written = add_subscriber(package, args.topic, args.handler, args.message, args.group)
    for path in written:
        print(f"wrote {path}")
    print(f"next: fill in {written[0].name}, then run the tests (pytest {written[-1].name})")


def cmd_asyncapi(args: argparse.Namespace, container: Any) -> None:
    from brokerline.asyncapi import build_document, render
    from brokerline.catalog import read_catalog

    text = render(build_document(container.config(), asyncio.run(read_catalog(container))),
                  args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_openapi(args: argparse.Namespace, container: Any) -> None:
    from brokerline.asyncapi import render
    from brokerline.catalog import read_http_server

    server = asyncio.run(read_http_server(container))
    if server is None:
        raise ToolError("the service has no HTTP server (no http_server in its container); "
                        "add one as server/http.py of the template does")
    text = render(server.openapi(), args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_db_upgrade(
    args: argparse.Namespace, config: ServiceConfig, package: ServicePackage, program: str
) -> None:
    from brokerline.sql.migrations import MigrationError, upgrade

    project = migrations_of(package, program)

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        upgrade(project, config.database, args.revision)
    except MigrationError as exc:
        raise ToolError(str(exc)) from None
    print(f"database upgraded to {args.revision}")


def cmd_db_current(config: ServiceConfig, package: ServicePackage, program: str) -> None:
    from brokerline.sql.migrations import MigrationError, describe, revisions

    project = migrations_of(package, program)

    try:
        print(describe(asyncio.run(revisions(project, config.database)), project.program))
    except MigrationError as exc:
        raise ToolError(str(exc)) from None
