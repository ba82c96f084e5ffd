"""ReportService over a real gRPC server, its use case publishing to a fake `biz.ReportEvents`.

No broker: the fake is of the service's own protocol, so these tests pin what the report
service promises (validated, one id for both events, UNAVAILABLE when publishing fails)
without depending on how the data layer reaches a broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from brokerline.core.embedded import free_port

from {{ cookiecutter.package_name }}.api.report.v1 import report_pb2, report_pb2_grpc
from {{ cookiecutter.package_name }}.biz.report import (
    PublishUnavailable,
    Report,
    ReportStatus,
    ReportUseCase,
)
from {{ cookiecutter.package_name }}.conf import load_config
from {{ cookiecutter.package_name }}.server.grpc import new_grpc_server
from {{ cookiecutter.package_name }}.service.report import ReportService

NOW = 1_700_000_000.5


class RecordingEvents:
    """A ReportEvents that keeps what it was given; `down` makes it refuse, as an outage does."""

    def __init__(self) -> None:
        self.published: list[tuple[Report, ReportStatus]] = []
        self.down = False

    async def publish(self, report: Report, status: ReportStatus) -> None:
        if self.down:
            raise PublishUnavailable("the broker is down")
        self.published.append((report, status))


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
async def stub(events: RecordingEvents) -> AsyncIterator[report_pb2_grpc.ReportServiceStub]:
    config = load_config(environ={}, overrides={"grpc": {"address": f"127.0.0.1:{free_port()}"}})
    server = new_grpc_server(config, ReportService(ReportUseCase(events, clock=lambda: NOW)))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(config.grpc.address) as channel:
            yield report_pb2_grpc.ReportServiceStub(channel)
    finally:
        await server.stop(1)


def request(**fields: str) -> report_pb2.PostReportRequest:
    values = {"user_id": "u-1", "event_name": "page_view", "content": '{"page": "/"}', **fields}
    return report_pb2.PostReportRequest(**values)


async def test_a_report_is_published_as_a_report_and_its_status_under_one_id(
    stub: report_pb2_grpc.ReportServiceStub, events: RecordingEvents
) -> None:
    reply = await stub.PostReport(request(), timeout=5)
    assert (reply.code, reply.msg) == (0, "success")
    [(report, status)] = events.published
    assert report == Report(reply.event_id, "u-1", "page_view", '{"page": "/"}', 1_700_000_000_500)
    assert status == ReportStatus(reply.event_id, "u-1", "accepted", 1_700_000_000_500)


async def test_two_reports_get_two_ids(
    stub: report_pb2_grpc.ReportServiceStub, events: RecordingEvents
) -> None:
    first = await stub.PostReport(request(), timeout=5)
    second = await stub.PostReport(request(), timeout=5)
    assert first.event_id != second.event_id
    assert len(events.published) == 2


async def test_a_report_the_rules_refuse_is_invalid_and_not_published(
    stub: report_pb2_grpc.ReportServiceStub, events: RecordingEvents
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PostReport(request(user_id="", content="a\x00b"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert "user_id is required" in details and "content contains a NUL" in details
    assert events.published == []


async def test_a_report_that_cannot_be_published_is_unavailable_not_ok(
    stub: report_pb2_grpc.ReportServiceStub, events: RecordingEvents
) -> None:
    events.down = True
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PostReport(request(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "retry later" in (refused.value.details() or "")
