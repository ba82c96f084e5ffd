"""SaverService: subscriber handlers that persist report events."""

from __future__ import annotations

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..data.repo import AcceptStatusRepo, RealtimeWarehousingRepo
from ..transport.broker import MessageContext


class SaverService:
    """Each handler returns once the row is committed, so the broker acks only stored events.

    Inserts are idempotent on `event_id`: a redelivered event is acked without a second row.
    """

    def __init__(self, realtime_repo: RealtimeWarehousingRepo, status_repo: AcceptStatusRepo):
        self.realtime_repo = realtime_repo
        self.status_repo = status_repo

    async def save_event_report(self, msg: RealTimeWarehousingData, ctx: MessageContext) -> None:
        await self.realtime_repo.save([msg])

    async def save_user_report(self, msg: UserReportData, ctx: MessageContext) -> None:
        await self.status_repo.save([msg])
