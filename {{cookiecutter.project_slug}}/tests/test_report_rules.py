"""The storability rules (`biz.report_rules`), the codec's message-type check, and that what
the rules accept the database stores: the limits are the columns' sizes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from brokerline.config import DatabaseConfig
from brokerline.core import DecodeError
from brokerline.core.codec import JSON, PROTOBUF, Codec
from brokerline.sql.database import Database
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from {{ cookiecutter.package_name }}.api.events.v1.events_pb2 import (
    RealTimeWarehousingData,
    UserReportData,
)
from {{ cookiecutter.package_name }}.api.report.v1.report_pb2 import PostReportRequest
from {{ cookiecutter.package_name }}.biz.report import Report, ReportStatus
from {{ cookiecutter.package_name }}.biz.report_rules import (
    CONTENT_MAX_BYTES,
    EVENT_ID_MAX_CHARS,
    EVENT_NAME_MAX_CHARS,
    MAX_CREATE_TIME_MS,
    STATUS_MAX_CHARS,
    USER_ID_MAX_CHARS,
    post_report_problems,
    report_event_problems,
    status_event_problems,
)
from {{ cookiecutter.package_name }}.containers import database_resource
from {{ cookiecutter.package_name }}.data.models import AcceptStatus, RealtimeWarehousing
from {{ cookiecutter.package_name }}.data.repo import AcceptStatusRepo, RealtimeWarehousingRepo

from .databases import DATABASES, scratch_postgres_database

NOW_MS = int(time.time() * 1000)


def report(**fields: Any) -> dict[str, Any]:
    """A storable report event's fields, with `fields` changed."""
    return {
        "event_id": "e1", "user_id": "u", "event_name": "click", "report_data": "{}",
        "create_time_ms": NOW_MS, **fields,
    }


def status(**fields: Any) -> dict[str, Any]:
    return {"event_id": "e1", "user_id": "u", "status": "accepted", "create_time_ms": NOW_MS,
            **fields}


def test_a_storable_event_has_no_problems() -> None:
    assert report_event_problems(**report()) == []
    assert status_event_problems(**status()) == []
    assert report_event_problems(**report(create_time_ms=MAX_CREATE_TIME_MS)) == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"event_id": ""}, "event_id is required"),
        ({"event_id": "  "}, "event_id is required"),
        ({"event_id": "x" * (EVENT_ID_MAX_CHARS + 1)}, "event_id is longer than 64 characters"),
        ({"user_id": ""}, "user_id is required"),
        ({"user_id": "é" * (USER_ID_MAX_CHARS + 1)}, "user_id is longer than 128 characters"),
        ({"event_name": ""}, "event_name is required"),
        ({"event_name": "n" * (EVENT_NAME_MAX_CHARS + 1)}, "event_name is longer than 128"),
        ({"report_data": "a\x00b"}, "report_data contains a NUL character"),
        ({"event_id": "id\x00"}, "event_id contains a NUL character"),
        ({"user_id": "\x00"}, "user_id contains a NUL character"),
        ({"event_name": "é\ud800"}, "event_name contains a lone UTF-16 surrogate"),
        ({"report_data": "\udfff"}, "report_data contains a lone UTF-16 surrogate"),
        ({"create_time_ms": 0}, "create_time_ms is missing"),
        ({"create_time_ms": -1}, "create_time_ms -1 is not a time after 1970"),
        ({"create_time_ms": MAX_CREATE_TIME_MS + 1}, "is not a time after 1970 and before"),
    ],
)
def test_what_the_saver_cannot_store_is_named(fields: dict[str, Any], problem: str) -> None:
    problems = report_event_problems(**report(**fields))
    assert len(problems) == 1 and problem in problems[0], problems


def test_status_rules() -> None:
    assert status_event_problems(**status(status="")) == ["status is required"]
    too_long = status_event_problems(**status(status="s" * (STATUS_MAX_CHARS + 1)))
    assert too_long == ["status is longer than 32 characters (33)"]
    assert status_event_problems(**status(event_id="", create_time_ms=0)) == [
        "event_id is required", "create_time_ms is missing"
    ]


def test_problems_never_quote_the_value() -> None:
    secret = "card 4111-1111\x00" + "x" * 200
    problems = report_event_problems(**report(user_id=secret, report_data=secret))
    assert problems and not any("4111" in p for p in problems)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"user_id": ""}, "user_id is required"),
        ({"event_name": " "}, "event_name is required"),
        ({"user_id": "u" * 129}, "user_id is longer than 128 characters"),
        ({"content": "a\x00b"}, "content contains a NUL character"),
        ({"event_name": "e\x00"}, "event_name contains a NUL character"),
        ({"content": "é" * (CONTENT_MAX_BYTES // 2 + 1)}, "content is longer than 65536 bytes"),
    ],
)
def test_the_report_api_refuses_what_the_saver_could_not_store(
    fields: dict[str, str], problem: str
) -> None:
    request = {"user_id": "u", "event_name": "e", "content": "", **fields}
    problems = post_report_problems(**request)
    assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize(
    "request_fields",
    [
        {"user_id": "u", "event_name": "e", "content": ""},
        {"user_id": "ü" * USER_ID_MAX_CHARS, "event_name": "名" * EVENT_NAME_MAX_CHARS,
         "content": "x" * CONTENT_MAX_BYTES},
        {"user_id": "o'brien", "event_name": "💥", "content": "\t\n\x01 \u2028"},
    ],
)
def test_an_accepted_report_makes_storable_events(request_fields: dict[str, str]) -> None:
    """The report service builds its events from the request: accepted -> storable."""
    assert post_report_problems(**request_fields) == []
    event = report(
        event_id="0" * 32, user_id=request_fields["user_id"],
        event_name=request_fields["event_name"], report_data=request_fields["content"],
    )
    assert report_event_problems(**event) == []
    assert status_event_problems(**status(user_id=request_fields["user_id"])) == []


# -- the codec: a protobuf payload names its type; another type is a decode error -----------


def test_a_payload_naming_another_message_type_is_a_decode_error() -> None:
    codec = Codec()
    payload, content_type = codec.encode(UserReportData(event_id="e", status="accepted"))
    assert content_type == f"{PROTOBUF}; proto=events.v1.UserReportData"
    decode = codec.decoder_for_type(RealTimeWarehousingData)
    with pytest.raises(DecodeError, match=r"is a events\.v1\.UserReportData, not a events\.v1"):
        decode(payload, content_type)
    request, request_type = codec.encode(PostReportRequest(user_id="u"))
    with pytest.raises(DecodeError, match=r"report\.v1\.PostReportRequest"):
        decode(request, request_type)
    # its own type decodes, and so does a payload that names none (another producer's)
    own, own_type = codec.encode(RealTimeWarehousingData(event_id="e"))
    for named in (own_type, PROTOBUF, "application/octet-stream", None):
        assert decode(own, named).event_id == "e"


def test_a_newer_producer_with_more_fields_is_still_read() -> None:
    decode = Codec().decoder_for_type(RealTimeWarehousingData)
    event = RealTimeWarehousingData(event_id="e", user_id="u", create_time_ms=NOW_MS)
    # field 15 (varint 7) and field 16 (a string): fields this schema does not have yet
    newer = event.SerializeToString() + b"\x78\x07" + b"\x82\x01\x03new"
    decoded = decode(newer, f"{PROTOBUF}; proto=events.v1.RealTimeWarehousingData")
    assert (decoded.event_id, decoded.user_id, decoded.create_time_ms) == ("e", "u", NOW_MS)
    assert decoded.SerializeToString() == newer  # the unknown fields are kept, not dropped
    as_json = b'{"eventId": "e", "userId": "u", "priority": 3}'
    assert decode(as_json, JSON).user_id == "u"


# -- what the rules accept, the database stores ------------------------------------------


@pytest.fixture(params=DATABASES)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of each kind the project supports, with the tables created."""
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
        else:
            url = await stack.enter_async_context(scratch_postgres_database())
        resource = database_resource(DatabaseConfig(url=url))
        yield await anext(resource)
        await resource.aclose()


async def test_events_at_every_limit_are_stored_as_sent(database: Database) -> None:
    longest = report(
        event_id="i" * EVENT_ID_MAX_CHARS, user_id="ü" * USER_ID_MAX_CHARS,
        event_name="名" * EVENT_NAME_MAX_CHARS, report_data="💥\x01" * 1000,
        create_time_ms=MAX_CREATE_TIME_MS,
    )
    assert report_event_problems(**longest) == []
    assert await RealtimeWarehousingRepo(database).save([Report(**longest)]) == 1
    state = status(event_id="s" * EVENT_ID_MAX_CHARS, status="z" * STATUS_MAX_CHARS)
    assert status_event_problems(**state) == []
    assert await AcceptStatusRepo(database).save([ReportStatus(**state)]) == 1
    async with database.sessions() as session:
        row = (await session.scalars(select(RealtimeWarehousing))).one()
        stored_status = (await session.scalars(select(AcceptStatus))).one()
    assert (row.event_id, row.user_id, row.event_name, row.report_data) == (
        longest["event_id"], longest["user_id"], longest["event_name"], longest["report_data"]
    )
    assert row.create_time.year == 9999
    assert stored_status.status == state["status"]


async def test_postgresql_refuses_the_nul_that_the_rules_catch_first(database: Database) -> None:
    """Why the NUL rule exists: without it, one such event fails its whole batch."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite stores NUL characters; PostgreSQL refuses them")
    event = report(report_data="a\x00b")
    assert report_event_problems(**event) == [
        "report_data contains a NUL character, which the database cannot store"
    ]
    with pytest.raises(DBAPIError):
        await RealtimeWarehousingRepo(database).save([Report(**event)])
