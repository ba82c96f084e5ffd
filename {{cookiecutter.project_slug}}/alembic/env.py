"""Alembic's environment: runs the migrations on the app's database with its async engine.

The database URL is the app's `database.url` (configs/config.yaml, then DATABASE_URL or
{{ cookiecutter.package_name.upper() }}__DATABASE__URL), unless the caller passed one in
`config.attributes["database_url"]` (as `{{ cookiecutter.project_slug }} db` and the tests do).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from brokerline.config import DatabaseConfig
from {{ cookiecutter.package_name }}.conf import load_config
from brokerline.sql.database import create_engine
from {{ cookiecutter.package_name }}.data.models import Base

config = context.config
if config.config_file_name and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("database_url")
    return str(url) if url else load_config().database.url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite alters tables by copying them: batch mode makes that work in migrations
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_engine(DatabaseConfig(url=database_url()))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
