"""SaverService: the subscriber handlers of the report events (event in, use case out).

Each handler returns once its event is stored, so the broker acks only stored events. An
event the rules refuse is rejected: dead-lettered with the reason, never retried. A store
that is down raises a transient error, and the broker holds the events until it answers.
"""

from __future__ import annotations

from brokerline import MessageContext, Reject

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..biz.report import InvalidReport, Report, ReportStatus, SaverUseCase


class SaverService:
    def __init__(self, saver: SaverUseCase) -> None:
        self.saver = saver

    async def save_event_report(self, msg: RealTimeWarehousingData, ctx: MessageContext) -> None:
        report = Report(msg.event_id, msg.user_id, msg.event_name, msg.report_data,
                        msg.create_time_ms)
        try:
            await self.saver.save_report(report)
        except InvalidReport as exc:
            raise Reject(str(exc)) from None

    async def save_user_report(self, msg: UserReportData, ctx: MessageContext) -> None:
        status = ReportStatus(msg.event_id, msg.user_id, msg.status, msg.create_time_ms)
        try:
            await self.saver.save_status(status)
        except InvalidReport as exc:
            raise Reject(str(exc)) from None
