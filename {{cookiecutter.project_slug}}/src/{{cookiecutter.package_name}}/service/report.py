"""ReportService: the gRPC servicer of report.v1.ReportService (request in, use case out).

The same instance serves HTTP/JSON (server/http.py), where the request headers are the
invocation metadata: the client's request id comes from the `request_id` field or from the
`Idempotency-Key` header (`idempotency-key` gRPC metadata).
"""

from __future__ import annotations

import grpc

from ..api.report.v1 import report_pb2, report_pb2_grpc
from ..biz.report import InvalidReport, PublishUnavailable, ReportUseCase

#: the header (HTTP) / metadata key (gRPC) that may carry the request id
IDEMPOTENCY_KEY = "idempotency-key"


class ReportService(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, reports: ReportUseCase) -> None:
        self.reports = reports

    async def PostReport(  # noqa: N802 - the gRPC method name
        self, request: report_pb2.PostReportRequest, context: grpc.aio.ServicerContext
    ) -> report_pb2.PostReportResponse:
        request_id = await _request_id(request, context)
        try:
            report = await self.reports.post(
                request.user_id, request.event_name, request.content, request_id
            )
        except InvalidReport as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PublishUnavailable:
            # never OK for a report the broker did not accept: the client retries
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the broker did not accept the report; retry later"
            )
        return report_pb2.PostReportResponse(code=0, msg="success", event_id=report.event_id)


async def _request_id(
    request: report_pb2.PostReportRequest, context: grpc.aio.ServicerContext
) -> str:
    """The client's request id: the field, or the header; both given must agree."""
    header = next(
        (value for key, value in context.invocation_metadata() or () if key == IDEMPOTENCY_KEY),
        "",
    )
    if not isinstance(header, str):  # a binary (-bin) value cannot be this key
        header = ""
    if header and request.request_id and header != request.request_id:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "the Idempotency-Key header and the request_id field differ; send the request id "
            "in one of them, or the same in both",
        )
    return request.request_id or header
