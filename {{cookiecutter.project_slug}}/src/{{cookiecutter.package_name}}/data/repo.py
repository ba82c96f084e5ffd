"""Repositories: idempotent inserts keyed by event id; the saver's store (biz.ReportStore)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from brokerline.sql.batcher import RowBatchWriter
from brokerline.sql.database import Database
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..biz.report import Refused, Report, ReportStatus
from .models import AcceptStatus, Base, RealtimeWarehousing

log = logging.getLogger(__name__)


def _from_millis(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class _EventRepo:
    """Inserts rows keyed by a unique `event_id`; rows whose id is already stored are skipped."""

    model: type[Base]

    def __init__(self, db: Database) -> None:
        self.db = db
        insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        # A Core insert on the table, run on a connection: the ORM's bulk path costs more per
        # row. How many rows were new: SQLite's executemany sums its row counts; asyncpg's
        # gives none, so PostgreSQL returns the new ids (RETURNING makes SQLAlchemy build
        # multi-row VALUES in Python, which SQLite's plain executemany avoids).
        self._returning = db.dialect == "postgresql"
        table = Base.metadata.tables[self.model.__tablename__]
        statement: Any = insert(table).on_conflict_do_nothing(index_elements=["event_id"])
        self._insert = statement.returning(table.c.event_id) if self._returning else statement

    async def insert_rows(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert in one transaction; returns how many rows were new."""
        if not rows:
            return 0
        async with self.db.engine.begin() as conn:
            result = await conn.execute(self._insert, list(rows))
            inserted = len(result.all()) if self._returning else result.rowcount
        if inserted < len(rows):
            # redeliveries of stored events: acked without a second row
            log.info("skipped %d already stored event(s) in %s", len(rows) - inserted,
                     self.model.__tablename__)
        return inserted

    async def count(self) -> int:
        async with self.db.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(self.model)) or 0)


class RealtimeWarehousingRepo(_EventRepo):
    model = RealtimeWarehousing

    async def save(self, events: Sequence[Report]) -> int:
        return await self.insert_rows(
            [
                {
                    "event_id": e.event_id,
                    "user_id": e.user_id,
                    "event_name": e.event_name,
                    "report_data": e.report_data,
                    "create_time": _from_millis(e.create_time_ms),
                }
                for e in events
            ]
        )


class AcceptStatusRepo(_EventRepo):
    model = AcceptStatus

    async def save(self, statuses: Sequence[ReportStatus]) -> int:
        return await self.insert_rows(
            [
                {
                    "event_id": s.event_id,
                    "user_id": s.user_id,
                    "status": s.status,
                    "create_time": _from_millis(s.create_time_ms),
                }
                for s in statuses
            ]
        )


class BatchedReportStore:
    """The saver's store: each batch of reports or statuses is written in one transaction.

    A batch is what the batch subscriber received (up to `saver.batch_size` events, or what
    `saver.batch_delay_ms` gathered). If the database refuses some rows, the batch is split
    and only those are refused (dead-lettered); if it is down, the error is raised, so the
    broker holds the batch until it answers.
    """

    def __init__(self, reports: RealtimeWarehousingRepo, statuses: AcceptStatusRepo) -> None:
        self._reports = RowBatchWriter(reports.save)
        self._statuses = RowBatchWriter(statuses.save)

    async def save_reports(self, reports: Sequence[Report]) -> Refused:
        return await self._reports.write(reports)

    async def save_statuses(self, statuses: Sequence[ReportStatus]) -> Refused:
        return await self._statuses.write(statuses)
