"""SaverService and its use case, storing into a fake `biz.ReportStore`: no broker, no database.

The handlers are called as the broker server calls them (a decoded event and its context);
the fake is of the service's own protocol, so these tests pin what the saver promises: a
storable event is stored as sent, one the rules refuse is rejected (dead-lettered, never
retried) and never reaches the store, and a store failure is left to the broker to retry.
"""

from __future__ import annotations

import pytest
from brokerline import MessageContext, Reject

from {{ cookiecutter.package_name }}.api.events.v1.events_pb2 import (
    RealTimeWarehousingData,
    UserReportData,
)
from {{ cookiecutter.package_name }}.biz.report import Report, ReportStatus, SaverUseCase
from {{ cookiecutter.package_name }}.service.saver import SaverService

CREATED_MS = 1_700_000_000_000


class MemoryStore:
    """A ReportStore keeping what it stored in lists; `failure` makes every save raise it."""

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.statuses: list[ReportStatus] = []
        self.failure: Exception | None = None

    async def save_report(self, report: Report) -> None:
        if self.failure:
            raise self.failure
        self.reports.append(report)

    async def save_status(self, status: ReportStatus) -> None:
        if self.failure:
            raise self.failure
        self.statuses.append(status)


def context(topic: str) -> MessageContext:
    return MessageContext(topic=topic, key="u", headers={}, message_id="m-1",
                          redelivery_count=0, publish_time=None)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def saver(store: MemoryStore) -> SaverService:
    return SaverService(SaverUseCase(store))


async def test_a_report_event_is_stored_as_sent(saver: SaverService, store: MemoryStore) -> None:
    event = RealTimeWarehousingData(event_id="e-1", user_id="u", event_name="page_view",
                                    report_data="{}", create_time_ms=CREATED_MS)
    await saver.save_event_report(event, context("reports"))
    assert store.reports == [Report("e-1", "u", "page_view", "{}", CREATED_MS)]


async def test_a_status_event_is_stored_as_sent(saver: SaverService, store: MemoryStore) -> None:
    event = UserReportData(event_id="e-1", user_id="u", status="accepted",
                           create_time_ms=CREATED_MS)
    await saver.save_user_report(event, context("statuses"))
    assert store.statuses == [ReportStatus("e-1", "u", "accepted", CREATED_MS)]


async def test_an_event_the_rules_refuse_is_rejected_before_the_store(
    saver: SaverService, store: MemoryStore
) -> None:
    # an empty payload decodes as an empty message: no id, no time
    with pytest.raises(Reject, match=r"event_id is required.*create_time_ms is missing"):
        await saver.save_event_report(RealTimeWarehousingData(), context("reports"))
    with pytest.raises(Reject, match="status is required"):
        await saver.save_user_report(
            UserReportData(event_id="e", user_id="u", create_time_ms=CREATED_MS),
            context("statuses"),
        )
    assert store.reports == [] and store.statuses == []


async def test_a_store_failure_is_not_a_rejection(saver: SaverService, store: MemoryStore) -> None:
    """A database that is down must not dead-letter the event: the error reaches the broker
    layer as it is, which holds the message and retries it."""
    store.failure = ConnectionRefusedError("the database does not answer")
    event = UserReportData(event_id="e-1", user_id="u", status="accepted",
                           create_time_ms=CREATED_MS)
    with pytest.raises(ConnectionRefusedError):
        await saver.save_user_report(event, context("statuses"))
