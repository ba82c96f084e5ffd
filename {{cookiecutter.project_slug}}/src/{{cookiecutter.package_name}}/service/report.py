"""ReportService: accepts reports over gRPC and publishes them as events."""

from __future__ import annotations

import logging
import time
import uuid

import grpc

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..api.report.v1 import report_pb2, report_pb2_grpc
from ..biz.report_rules import post_report_problems
from ..data.publisher import EventPublisher
from brokerline.core import BrokerError
from brokerline.core.repeats import RepeatedLog

log = logging.getLogger(__name__)


class ReportService(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        # a broker outage refuses every call: one line per 10 s with a count, not one each
        self._refusals = RepeatedLog(log, logging.WARNING)

    async def PostReport(  # noqa: N802 - the gRPC method name
        self, request: report_pb2.PostReportRequest, context: grpc.aio.ServicerContext
    ) -> report_pb2.PostReportResponse:
        # what the saver would refuse is refused here: an accepted report is always storable
        problems = post_report_problems(
            user_id=request.user_id, event_name=request.event_name, content=request.content
        )
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        event_id = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        report = RealTimeWarehousingData(
            event_id=event_id,
            user_id=request.user_id,
            event_name=request.event_name,
            report_data=request.content,
            create_time_ms=now_ms,
        )
        status = UserReportData(
            event_id=event_id, user_id=request.user_id, status="accepted", create_time_ms=now_ms
        )
        try:
            await self.publisher.publish_report(report, status)
        except BrokerError as exc:
            # Never answer OK for a report the broker did not accept: the client retries.
            self._refusals.log(type(exc).__name__, "could not publish report %s: %s",
                               event_id, exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the broker did not accept the report; retry later"
            )
        return report_pb2.PostReportResponse(code=0, msg="success", event_id=event_id)
