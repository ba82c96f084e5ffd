"""SaverService: subscriber handlers that persist report events, in batches."""

from __future__ import annotations

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..biz.report_rules import report_event_problems, status_event_problems
from ..conf import SaverConfig
from brokerline.sql.batcher import BatchWriter
from ..data.repo import AcceptStatusRepo, RealtimeWarehousingRepo
from brokerline.core import MessageContext, Reject


class SaverService:
    """Each handler returns once its event is committed, so the broker acks only stored events.

    An event the database cannot store as it is (no id, no creation time, text too long or
    with a NUL character: see `biz.report_rules`) is rejected before it joins a batch: it is
    dead-lettered with the reason, never retried, and never becomes a row. Protobuf decodes
    almost any bytes as almost any message, so this is also what keeps an empty payload or
    another message type sent to the topic from becoming a junk row.

    Events are gathered into batches (up to `batch_size`, or `batch_delay` seconds) and each
    batch is one transaction: no per-message transaction on the hot path. If the database
    refuses some rows anyway, the batch is split and only those are dead-lettered; if it is
    down, every handler of the batch raises a transient error and the broker layer holds the
    events (the subscription pauses) until it answers. Inserts are idempotent on `event_id`:
    a redelivered event is acked without a second row.
    """

    def __init__(
        self,
        realtime_repo: RealtimeWarehousingRepo,
        status_repo: AcceptStatusRepo,
        settings: SaverConfig | None = None,
    ) -> None:
        self.realtime_repo = realtime_repo
        self.status_repo = status_repo
        settings = settings or SaverConfig()
        size, delay = settings.batch_size, settings.batch_delay_ms / 1000
        self._reports = BatchWriter(realtime_repo.save, max_size=size, max_delay=delay)
        self._statuses = BatchWriter(status_repo.save, max_size=size, max_delay=delay)

    async def save_event_report(self, msg: RealTimeWarehousingData, ctx: MessageContext) -> None:
        problems = report_event_problems(
            event_id=msg.event_id, user_id=msg.user_id, event_name=msg.event_name,
            report_data=msg.report_data, create_time_ms=msg.create_time_ms,
        )
        if problems:
            raise Reject("; ".join(problems))
        await self._reports.add(msg)

    async def save_user_report(self, msg: UserReportData, ctx: MessageContext) -> None:
        problems = status_event_problems(
            event_id=msg.event_id, user_id=msg.user_id, status=msg.status,
            create_time_ms=msg.create_time_ms,
        )
        if problems:
            raise Reject("; ".join(problems))
        await self._statuses.add(msg)
