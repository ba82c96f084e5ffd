"""ReportService: the gRPC servicer of report.v1.ReportService (request in, use case out)."""

from __future__ import annotations

import grpc

from ..api.report.v1 import report_pb2, report_pb2_grpc
from ..biz.report import InvalidReport, PublishUnavailable, ReportUseCase


class ReportService(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, reports: ReportUseCase) -> None:
        self.reports = reports

    async def PostReport(  # noqa: N802 - the gRPC method name
        self, request: report_pb2.PostReportRequest, context: grpc.aio.ServicerContext
    ) -> report_pb2.PostReportResponse:
        try:
            report = await self.reports.post(request.user_id, request.event_name, request.content)
        except InvalidReport as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PublishUnavailable:
            # never OK for a report the broker did not accept: the client retries
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the broker did not accept the report; retry later"
            )
        return report_pb2.PostReportResponse(code=0, msg="success", event_id=report.event_id)
