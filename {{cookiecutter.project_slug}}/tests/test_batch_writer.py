"""A batch with bad rows: the good rows are stored, each bad one is refused alone.

Real databases (SQLite always, PostgreSQL where the project uses it): the database itself
refuses the rows (a NOT NULL column left empty; on PostgreSQL also text with a NUL character),
the way a foreign producer's junk would reach it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from brokerline.config import DatabaseConfig
from brokerline.logs import quiet_driver_loggers
from brokerline.sql.batcher import RowBatchWriter
from brokerline.sql.database import Database
from sqlalchemy import select

from {{ cookiecutter.package_name }}.containers import database_resource
from {{ cookiecutter.package_name }}.data.models import RealtimeWarehousing
from {{ cookiecutter.package_name }}.data.repo import RealtimeWarehousingRepo

from .databases import DATABASES, scratch_postgres_database


@pytest.fixture(params=DATABASES)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'batch.db'}"
        resource = database_resource(DatabaseConfig(url=url))
        yield await anext(resource)
        await resource.aclose()
    else:
        async with scratch_postgres_database() as url:
            resource = database_resource(DatabaseConfig(url=url))
            yield await anext(resource)
            await resource.aclose()


def row(n: int, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_id": f"ev-{n}", "user_id": f"user-{n}", "event_name": "test",
        "report_data": f"secret-content-{n}", "create_time": datetime.now(UTC),
    }
    values.update(changes)
    return values


async def stored_ids(db: Database) -> set[str]:
    async with db.sessions() as session:
        return set((await session.scalars(select(RealtimeWarehousing.event_id))).all())


async def test_bad_rows_cost_only_themselves(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    repo = RealtimeWarehousingRepo(database)
    writes: list[int] = []

    async def write(rows: list[dict[str, Any]]) -> int:
        writes.append(len(rows))
        return await repo.insert_rows(rows)

    writer: RowBatchWriter[dict[str, Any]] = RowBatchWriter(write)
    bad = {7, 30, 50, 93}  # 30: text no driver can encode (a lone surrogate)
    if database.dialect == "postgresql":
        bad |= {20, 21}  # text PostgreSQL cannot hold
    rows = [
        row(n, user_id=None) if n in bad - {20, 21, 30}
        # asyncpg's error quotes the value it could not encode: it must not reach the reason
        else row(n, report_data=f"secret-content-{n} \ud800") if n == 30
        else row(n, report_data="a\x00b") if n in bad else row(n)
        for n in range(100)
    ]
    caplog.set_level(logging.DEBUG)  # every logger at DEBUG, as with LOG_LEVEL=DEBUG...
    quiet_driver_loggers()  # ...which keeps the drivers that log parameters at INFO
    refused = await writer.write(rows)

    assert set(refused) == bad
    assert refused[7].startswith("the database refused this row")
    assert await stored_ids(database) == {f"ev-{n}" for n in range(100) if n not in bad}
    assert writes[0] == 100 and len(writes) < 100, "the batch was split row by row"
    log_text = "\n".join(record.getMessage() for record in caplog.records)
    assert "secret-content" not in log_text, "row contents reached the log"
    reasons = " ".join(refused.values())
    assert "secret-content" not in reasons, "row contents reached a dead-letter reason"
    assert sum("refused" in r.getMessage() for r in caplog.records) == 1, "not aggregated"


async def test_a_refused_row_stored_before_by_a_good_half_is_not_stored_twice(
    database: Database,
) -> None:
    """The halves of a split batch commit on their own: a redelivery of the whole batch
    (the database went down mid-split) must still store each row once."""
    repo = RealtimeWarehousingRepo(database)
    writer: RowBatchWriter[dict[str, Any]] = RowBatchWriter(repo.insert_rows)
    rows = [row(n, user_id=None) if n == 3 else row(n) for n in range(10)]
    for _ in range(2):
        assert list(await writer.write(rows)) == [3]
    async with database.sessions() as session:
        count = len((await session.scalars(select(RealtimeWarehousing.id))).all())
    assert count == 9
