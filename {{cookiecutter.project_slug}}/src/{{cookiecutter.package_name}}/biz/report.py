"""The report use cases: accept a report and publish its events; store the events received.

What they need from outside is declared here as protocols, which `data/` implements (the
broker publisher, the database repositories) and the unit tests fake: `ReportEvents`
publishes, `ReportStore` persists. A report answered OK is always one the store can hold:
both use cases apply the same rules (`report_rules`).

Idempotent ingest: a report posted with a client request id gets the event id
`event_id_for(user_id, request_id)`, the same on every retry, so the broker's dedupe (where it
has one) and the store's unique event id keep one copy of it. Without one, each call is a new
report with a fresh id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .report_rules import post_report_problems, report_event_problems, status_event_problems

#: the UUIDv5 namespace of this service's event ids: another service deriving ids from the
#: same request ids gets other ones
EVENT_ID_NAMESPACE = uuid.uuid5(
    uuid.NAMESPACE_URL, "urn:{{ cookiecutter.project_slug }}:report-event"
)


def event_id_for(user_id: str, request_id: str) -> str:
    """The event id of a report: derived from its request id (scoped to its user), else new.

    UUIDv5 (SHA-1) over EVENT_ID_NAMESPACE and `<user_id>\\n<request_id>`, as 32 hex digits;
    a request id holds no newline (report_rules), so two pairs never join to the same text.
    """
    if not request_id:
        return uuid.uuid4().hex
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{user_id}\n{request_id}").hex


Event = TypeVar("Event")


class InvalidReport(ValueError):
    """The rules refuse a report or event; the message names the fields, never their values."""


class PublishUnavailable(Exception):
    """The events of a report were not accepted for publishing (broker down or refusing)."""


@dataclass(frozen=True, slots=True)
class Report:
    """A report, as published and stored; `event_id` identifies it everywhere."""

    event_id: str
    user_id: str
    event_name: str
    report_data: str
    create_time_ms: int


@dataclass(frozen=True, slots=True)
class ReportStatus:
    """The accept status of a report."""

    event_id: str
    user_id: str
    status: str
    create_time_ms: int


class ReportEvents(Protocol):
    async def publish(self, report: Report, status: ReportStatus) -> None:
        """Return once both events are accepted; raise PublishUnavailable if they are not."""


#: the events of a batch that were not stored: position in the batch -> why
Refused = dict[int, str]


class ReportStore(Protocol):
    """Saving is idempotent on `event_id`: a redelivered event adds no second row.

    Each call stores a batch in one transaction and returns once it is stored, so that its
    events can be acknowledged; rows the database refuses are returned (the others are
    stored); a database that is down raises.
    """

    async def save_reports(self, reports: Sequence[Report]) -> Refused: ...

    async def save_statuses(self, statuses: Sequence[ReportStatus]) -> Refused: ...


class ReportUseCase:
    """Accepting a report: checked, given an id and a time, published as two events."""

    def __init__(self, events: ReportEvents, clock: Callable[[], float] = time.time) -> None:
        self.events = events
        self.clock = clock

    async def post(
        self, user_id: str, event_name: str, content: str, request_id: str = ""
    ) -> Report:
        """The accepted report; InvalidReport or PublishUnavailable if it is not accepted.

        The same `request_id` (and user) answers the same event id: a retry, not a new report.
        """
        problems = post_report_problems(
            user_id=user_id, event_name=event_name, content=content, request_id=request_id
        )
        if problems:
            raise InvalidReport("; ".join(problems))
        now_ms = int(self.clock() * 1000)
        report = Report(event_id_for(user_id, request_id), user_id, event_name, content, now_ms)
        status = ReportStatus(report.event_id, user_id, "accepted", now_ms)
        await self.events.publish(report, status)
        return report


class SaverUseCase:
    """Storing received events, a batch at a time: one the store could not hold as it is is
    refused first (and so is one the database refuses), the others are stored.

    Protobuf decodes almost any bytes as almost any message, so this is also what keeps an
    empty payload, or another message type sent to the topic, from becoming a junk row.
    """

    def __init__(self, store: ReportStore) -> None:
        self.store = store

    async def save_reports(self, reports: Sequence[Report]) -> Refused:
        """Store a batch of reports; the refused ones (by the rules or the database) by
        position."""
        return await _save_valid(reports, _report_problems, self.store.save_reports)

    async def save_statuses(self, statuses: Sequence[ReportStatus]) -> Refused:
        return await _save_valid(statuses, _status_problems, self.store.save_statuses)


def _report_problems(report: Report) -> list[str]:
    return report_event_problems(
        event_id=report.event_id, user_id=report.user_id, event_name=report.event_name,
        report_data=report.report_data, create_time_ms=report.create_time_ms,
    )


def _status_problems(status: ReportStatus) -> list[str]:
    return status_event_problems(
        event_id=status.event_id, user_id=status.user_id, status=status.status,
        create_time_ms=status.create_time_ms,
    )


async def _save_valid(
    events: Sequence[Event],
    problems_of: Callable[[Event], list[str]],
    save: Callable[[Sequence[Event]], Awaitable[Refused]],
) -> Refused:
    """Save the events the rules accept; the refused ones, by position in `events`."""
    refused: Refused = {}
    valid: list[Event] = []
    positions: list[int] = []  # of each valid event in `events`
    for position, event in enumerate(events):
        problems = problems_of(event)
        if problems:
            refused[position] = "; ".join(problems)
        else:
            valid.append(event)
            positions.append(position)
    if valid:
        for index, reason in (await save(valid)).items():
            refused[positions[index]] = reason
    return refused
