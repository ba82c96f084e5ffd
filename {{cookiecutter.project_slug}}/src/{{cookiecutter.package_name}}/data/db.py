"""The database: an async SQLAlchemy engine and session factory, as an app resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InvalidRequestError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from ..conf import ConfigError, DatabaseConfig
from .models import Base

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
        engine = create_async_engine(url, echo=cfg.echo, pool_pre_ping=True)
    except (ArgumentError, ImportError, InvalidRequestError) as exc:
        raise ConfigError(
            f"database.url {url.render_as_string(hide_password=True)!r} cannot be used ({exc}); "
            "use an async driver: sqlite+aiosqlite:// or postgresql+asyncpg://"
        ) from None
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    return engine


async def database_resource(cfg: DatabaseConfig) -> AsyncIterator[Database]:
    """An open database for the app's lifetime (a dependency-injector resource)."""
    engine = create_engine(cfg)
    safe_url = engine.url.render_as_string(hide_password=True)
    try:
        async with engine.begin() as conn:
            if cfg.create_tables:
                await conn.run_sync(Base.metadata.create_all)
    except (SQLAlchemyError, OSError) as exc:
        await engine.dispose()
        raise ConfigError(
            f"cannot open the database at {safe_url} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); check database.url (DATABASE_URL) and that the "
            "server runs"
        ) from None
    log.info("database ready at %s", safe_url)
    try:
        yield Database(engine, async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()
