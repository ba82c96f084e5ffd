"""SaverService and its use case, storing into a fake `biz.ReportStore`: no broker, no database.

The handlers are called as the broker server calls them (a batch of decoded events and its
context); the fake is of the service's own protocol, so these tests pin what the saver
promises: storable events are stored as sent, one call per batch; one the rules refuse is
rejected (dead-lettered, never retried) and never reaches the store, while the rest of its
batch is stored; a row the store refuses is rejected too; and a store failure is left to the
broker to retry.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from brokerline import BatchContext, BatchResult, MessageContext

from {{ cookiecutter.package_name }}.api.events.v1.events_pb2 import (
    RealTimeWarehousingData,
    UserReportData,
)
from {{ cookiecutter.package_name }}.biz.report import (
    Refused,
    Report,
    ReportStatus,
    SaverUseCase,
)
from {{ cookiecutter.package_name }}.service.saver import SaverService

CREATED_MS = 1_700_000_000_000


class MemoryStore:
    """A ReportStore keeping what it stored in lists; `failure` makes every save raise it,
    and a report whose user is in `refused_users` is refused like a bad row."""

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.statuses: list[ReportStatus] = []
        self.calls = 0
        self.failure: Exception | None = None
        self.refused_users: set[str] = set()

    async def save_reports(self, reports: Sequence[Report]) -> Refused:
        self.calls += 1
        if self.failure:
            raise self.failure
        refused = {i: "the database refused this row" for i, r in enumerate(reports)
                   if r.user_id in self.refused_users}
        self.reports.extend(r for i, r in enumerate(reports) if i not in refused)
        return refused

    async def save_statuses(self, statuses: Sequence[ReportStatus]) -> Refused:
        self.calls += 1
        if self.failure:
            raise self.failure
        self.statuses.extend(statuses)
        return {}


def context(topic: str, size: int) -> BatchContext:
    messages = [
        MessageContext(topic=topic, key="u", headers={}, message_id=f"m-{n}",
                       redelivery_count=0, publish_time=None)
        for n in range(size)
    ]
    return BatchContext(topic=topic, group="saver", messages=messages)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def saver(store: MemoryStore) -> SaverService:
    return SaverService(SaverUseCase(store))


def report_event(n: int, **changes: object) -> RealTimeWarehousingData:
    event = RealTimeWarehousingData(event_id=f"e-{n}", user_id="u", event_name="page_view",
                                    report_data="{}", create_time_ms=CREATED_MS)
    for name, value in changes.items():
        setattr(event, name, value)
    return event


async def test_a_batch_of_report_events_is_stored_as_sent_in_one_call(
    saver: SaverService, store: MemoryStore
) -> None:
    batch = [report_event(1), report_event(2)]
    assert await saver.save_event_reports(batch, context("reports", 2)) is None
    assert store.reports == [Report(f"e-{n}", "u", "page_view", "{}", CREATED_MS)
                             for n in (1, 2)]
    assert store.calls == 1


async def test_a_status_event_is_stored_as_sent(saver: SaverService, store: MemoryStore) -> None:
    event = UserReportData(event_id="e-1", user_id="u", status="accepted",
                           create_time_ms=CREATED_MS)
    assert await saver.save_user_reports([event], context("statuses", 1)) is None
    assert store.statuses == [ReportStatus("e-1", "u", "accepted", CREATED_MS)]


async def test_events_the_rules_refuse_are_rejected_and_the_rest_stored(
    saver: SaverService, store: MemoryStore
) -> None:
    # an empty payload decodes as an empty message: no id, no time
    batch = [report_event(1), RealTimeWarehousingData(), report_event(3)]
    result = await saver.save_event_reports(batch, context("reports", 3))
    assert isinstance(result, BatchResult) and list(result.reject) == [1]
    assert "event_id is required" in result.reject[1]
    assert "create_time_ms is missing" in result.reject[1]
    assert [r.event_id for r in store.reports] == ["e-1", "e-3"]
    status = UserReportData(event_id="e", user_id="u", create_time_ms=CREATED_MS)
    result = await saver.save_user_reports([status], context("statuses", 1))
    assert isinstance(result, BatchResult) and "status is required" in result.reject[0]
    assert store.statuses == [] and store.calls == 1  # an all-refused batch never reaches it


async def test_rows_the_store_refuses_are_rejected_by_their_position_in_the_batch(
    saver: SaverService, store: MemoryStore
) -> None:
    store.refused_users = {"bad"}
    batch = [RealTimeWarehousingData(), report_event(2, user_id="bad"), report_event(3)]
    result = await saver.save_event_reports(batch, context("reports", 3))
    assert isinstance(result, BatchResult)
    assert sorted(result.reject) == [0, 1]
    assert result.reject[1] == "the database refused this row"
    assert [r.event_id for r in store.reports] == ["e-3"]


async def test_a_store_failure_is_not_a_rejection(saver: SaverService, store: MemoryStore) -> None:
    """A database that is down must not dead-letter the events: the error reaches the broker
    layer as it is, which holds the batch and retries it."""
    store.failure = ConnectionRefusedError("the database does not answer")
    event = UserReportData(event_id="e-1", user_id="u", status="accepted",
                           create_time_ms=CREATED_MS)
    with pytest.raises(ConnectionRefusedError):
        await saver.save_user_reports([event], context("statuses", 1))
