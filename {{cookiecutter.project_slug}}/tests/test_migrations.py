"""Migrations: `db upgrade` builds the schema the models describe, on each supported database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from brokerline.config import DatabaseConfig
from brokerline.sql.database import create_engine
from brokerline.sql.migrations import Project, revisions, upgrade
from sqlalchemy.engine import Connection

from {{ cookiecutter.package_name }}.data.models import Base

from .databases import DATABASES, scratch_postgres_database

PROJECT = Path(__file__).resolve().parent.parent
PROJECT_MIGRATIONS = Project("{{ cookiecutter.project_slug }}", PROJECT)


@pytest.fixture(params=DATABASES)
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty database of each kind the project supports."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    else:
        async with scratch_postgres_database() as url:
            yield url


def _schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def schema_diff(url: str) -> list[Any]:
    """What `alembic revision --autogenerate` would add: empty when migrations match models."""
    engine = create_engine(DatabaseConfig(url=url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_schema_diff)
    finally:
        await engine.dispose()


async def test_upgrade_builds_exactly_the_models_schema(empty_database: str) -> None:
    database = DatabaseConfig(url=empty_database, create_tables=False)
    before = await revisions(PROJECT_MIGRATIONS, database)
    assert before.current == () and not before.up_to_date
    await asyncio.to_thread(upgrade, PROJECT_MIGRATIONS, database)  # env.py runs its own event loop
    after = await revisions(PROJECT_MIGRATIONS, database)
    assert after.up_to_date and after.current == after.heads
    assert await schema_diff(empty_database) == []


def test_db_commands_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "{{ cookiecutter.package_name }}", "db", *args],
            capture_output=True, text=True, timeout=120, cwd=PROJECT, env=env,
        )

    assert "no migration applied yet" in db("current").stdout
    upgraded = db("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "(up to date)" in db("current").stdout
    bad = db("upgrade", "no-such-revision")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: cannot upgrade")
{%- if cookiecutter.include_sample %}


async def test_without_create_tables_missing_tables_are_one_clear_error(tmp_path: Path) -> None:
    from brokerline.config import ConfigError

    from {{ cookiecutter.package_name }}.containers import database_resource

    config = DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", create_tables=False)
    with pytest.raises(ConfigError, match="db upgrade"):
        async for _db in database_resource(config):
            pass


async def test_pipeline_on_a_migrated_database_without_create_tables(empty_database: str) -> None:
    """Production mode: the schema comes from `db upgrade`, the saver creates nothing."""
    from brokerline.memory.broker import MemoryBroker
    from brokerline.testing.brokers import eventually
    from dependency_injector import providers

    from {{ cookiecutter.package_name }}.api.events.v1.events_pb2 import RealTimeWarehousingData
    from {{ cookiecutter.package_name }}.conf import load_config
    from {{ cookiecutter.package_name }}.containers import Container, build_app

    await asyncio.to_thread(upgrade, PROJECT_MIGRATIONS, DatabaseConfig(url=empty_database))
    config = load_config(
        environ={}, overrides={"database": {"url": empty_database, "create_tables": False},
                               "shutdown_timeout": 5}
    )
    container: Any = Container(config=config)  # providers of async resources return awaitables
    broker = MemoryBroker()
    await broker.connect()
    container.broker.override(providers.Object(broker))
    app = await build_app(config, "saver", container)
    await app.start()
    try:
        event = RealTimeWarehousingData(
            event_id="e1", user_id="u", event_name="n", create_time_ms=1_700_000_000_000
        )
        await broker.publish(config.topics.report, event, key="u")
        repo = await container.realtime_repo()

        async def stored() -> bool:
            return await repo.count() == 1

        await eventually(stored)
    finally:
        await app.stop()  # and its resources
        await broker.close(timeout=5)
{%- endif %}


OPEN_DATABASE = """
import asyncio, sys, time
from brokerline.config import DatabaseConfig
from {{ cookiecutter.package_name }}.containers import database_resource

async def main():
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all at once, imports done
    resource = database_resource(DatabaseConfig(url=sys.argv[1]))
    await anext(resource)
    await resource.aclose()

asyncio.run(main())
"""


def test_processes_starting_at_once_all_create_the_tables(tmp_path: Path) -> None:
    """`serve saver --workers N` starts N processes on one new database: each creates the
    tables it finds missing, and the ones that lose that race must not fail."""
    for round_ in range(3):
        url = f"sqlite+aiosqlite:///{tmp_path / f'shared-{round_}.db'}"
        at = str(time.time() + 4)
        starts = [
            subprocess.Popen([sys.executable, "-c", OPEN_DATABASE, url, at],
                             stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        failures = [p.communicate(timeout=120)[1].decode() for p in starts if p.wait() != 0]
        assert not failures, failures[0][-2000:]
