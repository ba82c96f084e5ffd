"""The databases the tests run on: SQLite always, PostgreSQL where the project uses it.

PostgreSQL tests need a server: TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432,
database `test`, trust auth). Each test gets a scratch database of its own, dropped after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

{% if cookiecutter.database == 'postgresql' -%}
DATABASES = ["sqlite", "postgresql"]
{%- else -%}
DATABASES = ["sqlite"]
{%- endif %}
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@asynccontextmanager
async def scratch_postgres_database() -> AsyncIterator[str]:
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, ImportError) as exc:
        await admin.dispose()
        pytest.skip(
            f"no PostgreSQL server answers at {POSTGRES_URL} ({exc}); set TEST_POSTGRES_URL"
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
