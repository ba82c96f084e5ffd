"""The database: an async SQLAlchemy engine and session factory, as an app resource."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    InvalidRequestError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from brokerline.config import ConfigError, DatabaseConfig
from brokerline.telemetry import instrument_engine

log = logging.getLogger(__name__)


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    # WAL + synchronous=NORMAL: durable across process crashes, ~100x faster than the default
    # journal that fsyncs every commit; busy_timeout lets a second process wait for the lock.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def create_engine(cfg: DatabaseConfig) -> AsyncEngine:
    try:
        url = make_url(cfg.url)
    except ArgumentError:
        raise ConfigError(
            f"database.url {cfg.url!r} is not a database URL; use e.g. "
            "sqlite+aiosqlite:///data/app.db or postgresql+asyncpg://user@host/db"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        # hide_parameters: a failed statement's error (and echo) never carries the rows: no
        # report content in any log line
        engine = create_async_engine(url, echo=cfg.echo, pool_pre_ping=True, hide_parameters=True)
    except (ArgumentError, ImportError, InvalidRequestError) as exc:
        raise ConfigError(
            f"database.url {url.render_as_string(hide_password=True)!r} cannot be used ({exc}); "
            "use an async driver: sqlite+aiosqlite:// or postgresql+asyncpg://"
        ) from None
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    instrument_engine(engine)  # a span per statement, inside the handler's span
    return engine


def missing_tables(conn: Connection, metadata: MetaData) -> list[str]:
    """The model tables that the database lacks (none once the migrations are applied)."""
    existing = set(inspect(conn).get_table_names())
    return sorted(set(metadata.tables) - existing)


#: passes of create_all before a failure to create the tables is an error
CREATE_ATTEMPTS = 5


async def _create_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """`create_all`, safe when several processes start at once (`serve saver --workers N`):
    it checks for each table and then creates it, so a process can lose the race for one
    table ("table ... already exists"). Each lost race means another process created that
    table; the next pass sees it. With several tables and processes a process can lose more
    than once, so it tries up to CREATE_ATTEMPTS times before the error is real."""
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == CREATE_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * attempt)  # let the winner commit its DDL


async def database_resource(
    cfg: DatabaseConfig, metadata: MetaData, program: str
) -> AsyncGenerator[Database, None]:
    """An open database for the app's lifetime (a dependency-injector resource).

    `metadata` holds the service's tables (created when `database.create_tables` is true, else
    required); `program` is the service's command, named in the advice to migrate.
    """
    engine = create_engine(cfg)
    safe_url = engine.url.render_as_string(hide_password=True)
    try:
        if cfg.create_tables:
            await _create_tables(engine, metadata)
        async with engine.begin() as conn:
            missing = await conn.run_sync(missing_tables, metadata)
    except (SQLAlchemyError, OSError) as exc:
        await engine.dispose()
        raise ConfigError(
            f"cannot open the database at {safe_url} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); check database.url (DATABASE_URL) and that the "
            "server runs"
        ) from None
    if missing:
        await engine.dispose()
        raise ConfigError(
            f"the database at {safe_url} has no table {', '.join(missing)} and "
            f"database.create_tables is false; apply the migrations with `{program} db upgrade`"
        )
    log.info("database ready at %s", safe_url)
    try:
        yield Database(engine, async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()
