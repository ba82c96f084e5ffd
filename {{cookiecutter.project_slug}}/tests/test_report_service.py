"""ReportService over a real gRPC server, its use case publishing to a fake `biz.ReportEvents`.

No broker: the fake is of the service's own protocol, so these tests pin what the report
service promises (validated, one id for both events, UNAVAILABLE when publishing fails)
without depending on how the data layer reaches a broker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from brokerline.core.embedded import free_port

from {{ cookiecutter.package_name }}.api.report.v1 import report_pb2, report_pb2_grpc
from {{ cookiecutter.package_name }}.biz.report import (
    EVENT_ID_NAMESPACE,
    PublishUnavailable,
    Report,
    ReportStatus,
    ReportUseCase,
    event_id_for,
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


# -- idempotent ingest: the client's request id ---------------------------------------------
async def test_a_retried_request_id_answers_the_same_event_id(
    stub: report_pb2_grpc.ReportServiceStub, events: RecordingEvents
) -> None:
    first = await stub.PostReport(request(request_id="req-1"), timeout=5)
    retry = await stub.PostReport(request(request_id="req-1"), timeout=5)
    other = await stub.PostReport(request(request_id="req-2"), timeout=5)
    elsewhere = await stub.PostReport(request(request_id="req-1", user_id="u-2"), timeout=5)
    assert first.event_id == retry.event_id == event_id_for("u-1", "req-1")
    # another request, or the same request id of another user: another report
    assert len({first.event_id, other.event_id, elsewhere.event_id}) == 3
    assert [r.event_id for r, _ in events.published].count(first.event_id) == 2


def test_the_event_id_is_a_uuid5_in_the_service_namespace() -> None:
    derived = uuid.UUID(event_id_for("u-1", "req-1"))
    assert derived.version == 5
    assert derived == uuid.uuid5(EVENT_ID_NAMESPACE, "u-1\nreq-1")
    assert event_id_for("u-1", "") != event_id_for("u-1", "")  # no request id: a fresh one


async def test_the_idempotency_key_metadata_is_the_request_id(
    stub: report_pb2_grpc.ReportServiceStub,
) -> None:
    keyed = await stub.PostReport(
        request(), metadata=(("idempotency-key", "req-9"),), timeout=5
    )
    both = await stub.PostReport(
        request(request_id="req-9"), metadata=(("idempotency-key", "req-9"),), timeout=5
    )
    assert keyed.event_id == both.event_id == event_id_for("u-1", "req-9")


@pytest.mark.parametrize(
    ("request_id", "metadata", "problem"),
    [
        ("r" * 129, (), "request_id is longer than 128 characters (129)"),
        ("two words", (), "request_id may hold only printable ASCII characters"),
        ("line\nbreak", (), "request_id may hold only printable ASCII characters"),
        ("café", (), "request_id may hold only printable ASCII characters"),
        ("req-1", (("idempotency-key", "req-2"),), "the Idempotency-Key header and the "
         "request_id field differ"),
    ],
)
async def test_a_bad_request_id_is_invalid_and_not_published(
    stub: report_pb2_grpc.ReportServiceStub, events: RecordingEvents,
    request_id: str, metadata: tuple[tuple[str, str], ...], problem: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PostReport(request(request_id=request_id), metadata=metadata, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (refused.value.details() or "")
    assert events.published == []
