"""ReportService: accepts reports over gRPC and publishes them as events."""

from __future__ import annotations

import logging
import time
import uuid

import grpc

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..api.report.v1 import report_pb2, report_pb2_grpc
from ..data.publisher import EventPublisher
from ..transport.broker import BrokerError

log = logging.getLogger(__name__)

MAX_FIELD_BYTES = {"user_id": 128, "event_name": 128, "content": 64 * 1024}


def invalid_fields(request: report_pb2.PostReportRequest) -> list[str]:
    """Why the request cannot be accepted (empty when it can)."""
    problems = []
    for name, limit in MAX_FIELD_BYTES.items():
        value: str = getattr(request, name)
        if name != "content" and not value.strip():
            problems.append(f"{name} is required")
        elif len(value.encode()) > limit:
            problems.append(f"{name} is longer than {limit} bytes")
    return problems


class ReportService(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher

    async def PostReport(  # noqa: N802 - the gRPC method name
        self, request: report_pb2.PostReportRequest, context: grpc.aio.ServicerContext
    ) -> report_pb2.PostReportResponse:
        problems = invalid_fields(request)
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
            log.warning("could not publish report %s: %s", event_id, exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the broker did not accept the report; retry later"
            )
        return report_pb2.PostReportResponse(code=0, msg="success", event_id=event_id)
