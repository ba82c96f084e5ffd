"""The reliability tests' audit (`tests/accounting.py`) can fail: shown with idempotency off.

A duplicate check that the unique index on `event_id` makes impossible to fail proves nothing,
so the audit counts rows per report content. Here reports are stored twice on purpose, once
under new ids next to the real index and once into a table without the index through a plain
insert, and the audit must report each; a report without a row must be reported lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from brokerline.config import DatabaseConfig
from brokerline.sql.database import Database, create_engine
from sqlalchemy import Column, MetaData, Table, insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from {{ cookiecutter.package_name }}.biz.report import Report, ReportStatus
from {{ cookiecutter.package_name }}.data.models import AcceptStatus, Base, RealtimeWarehousing
from {{ cookiecutter.package_name }}.data.repo import AcceptStatusRepo, RealtimeWarehousingRepo

from .accounting import audit_reports


def reports(first: int, count: int, id_prefix: str = "id") -> list[Report]:
    return [Report(event_id=f"{id_prefix}-{n}", user_id="u", event_name="e",
                   report_data=f"content-{n}", create_time_ms=1_700_000_000_000)
            for n in range(first, first + count)]


def accepted(events: list[Report]) -> dict[str, str]:
    return {e.event_id: e.report_data for e in events}


async def open_database(url: str, tables: list[Table]) -> Database:
    engine = create_engine(DatabaseConfig(url=url))
    async with engine.begin() as conn:
        for table in tables:
            await conn.run_sync(table.create)
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))


async def store_statuses(db: Database, events: list[Report]) -> None:
    await AcceptStatusRepo(db).save(
        [ReportStatus(event_id=e.event_id, user_id="u", status="accepted",
                      create_time_ms=e.create_time_ms) for e in events])


async def test_the_audit_finds_reports_stored_twice_under_new_ids_and_reports_lost(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    db = await open_database(url, [Base.metadata.tables[m.__tablename__]
                                   for m in (RealtimeWarehousing, AcceptStatus)])
    try:
        repo = RealtimeWarehousingRepo(db)
        events = reports(0, 20)
        await repo.save(events)
        await repo.save(events)  # a redelivery: the idempotent insert adds no row
        await store_statuses(db, events)
        assert (await audit_reports(url, accepted(events))).problems() == []

        await repo.save(reports(0, 3, id_prefix="again"))  # the same reports, new ids
        never_stored = reports(100, 2)
        audit = await audit_reports(url, accepted(events + never_stored))
    finally:
        await db.engine.dispose()
    assert audit.stored_twice == {"content-0": 2, "content-1": 2, "content-2": 2}
    assert audit.lost == ["content-100", "content-101"]
    assert audit.lost_statuses == ["id-100", "id-101"]
    with pytest.raises(AssertionError, match="3 reports were stored more than once"):
        audit.assert_exactly_once()


async def test_the_audit_finds_events_inserted_twice_without_the_unique_index(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    real = Base.metadata.tables[RealtimeWarehousing.__tablename__]
    # the same columns without the unique constraint on event_id: idempotency switched off
    unindexed = Table(real.name, MetaData(),
                      *(Column(c.name, c.type, primary_key=c.primary_key) for c in real.columns))
    db = await open_database(url, [unindexed, Base.metadata.tables[AcceptStatus.__tablename__]])
    events = reports(0, 10)
    rows = [{"event_id": e.event_id, "user_id": e.user_id, "event_name": e.event_name,
             "report_data": e.report_data, "create_time": datetime.now(UTC)} for e in events]
    try:
        for _ in range(2):  # a plain insert, no ON CONFLICT: a redelivery adds a second row
            async with db.engine.begin() as conn:
                await conn.execute(insert(unindexed), rows)
        await store_statuses(db, events)
        audit = await audit_reports(url, accepted(events))
    finally:
        await db.engine.dispose()
    assert audit.stored_twice == {e.report_data: 2 for e in events}
    assert audit.lost == []
    with pytest.raises(AssertionError, match="10 reports were stored more than once"):
        audit.assert_exactly_once()
