"""SaverService: the batch subscriber handlers of the report events (events in, use case out).

Each handler gets a batch of decoded events (one broker call, one transaction) and returns
once they are stored, so the broker acks only stored events. An event the rules or the
database refuse is rejected: dead-lettered with the reason, never retried; the rest of its
batch is stored and acked. A store that is down raises a transient error, and the broker
holds the batch until it answers.
"""

from __future__ import annotations

from brokerline import BatchContext, BatchResult

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..biz.report import Refused, Report, ReportStatus, SaverUseCase


def _settled(refused: Refused) -> BatchResult | None:
    return BatchResult(reject=refused) if refused else None


class SaverService:
    def __init__(self, saver: SaverUseCase) -> None:
        self.saver = saver

    async def save_event_reports(
        self, batch: list[RealTimeWarehousingData], ctx: BatchContext
    ) -> BatchResult | None:
        reports = [
            Report(m.event_id, m.user_id, m.event_name, m.report_data, m.create_time_ms)
            for m in batch
        ]
        return _settled(await self.saver.save_reports(reports))

    async def save_user_reports(
        self, batch: list[UserReportData], ctx: BatchContext
    ) -> BatchResult | None:
        statuses = [
            ReportStatus(m.event_id, m.user_id, m.status, m.create_time_ms) for m in batch
        ]
        return _settled(await self.saver.save_statuses(statuses))
