"""The sample pair in one process: a real gRPC call -> broker -> saver -> row in SQLite."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from brokerline.core.embedded import free_port
from brokerline.memory.broker import MemoryBroker
from brokerline.testing.brokers import eventually
from dependency_injector import providers
from sqlalchemy import select

from {{ cookiecutter.package_name }}.api.events.v1.events_pb2 import RealTimeWarehousingData
from {{ cookiecutter.package_name }}.api.report.v1 import report_pb2, report_pb2_grpc
from {{ cookiecutter.package_name }}.conf import load_config
from {{ cookiecutter.package_name }}.containers import Container, build_app
from {{ cookiecutter.package_name }}.data.models import RealtimeWarehousing

from .databases import DATABASES, scratch_postgres_database


async def memory_broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker()
    await broker.connect()
    yield broker
    await broker.close(timeout=5)


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind the project supports."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        async with scratch_postgres_database() as url:
            yield url


@pytest.fixture
async def running(database_url: str) -> AsyncIterator[tuple[Any, str]]:
    """Report and saver in one App, on an in-memory broker and a fresh database."""
    address = f"127.0.0.1:{free_port()}"
    config = load_config(
        environ={},
        overrides={
            "database": {"url": database_url},
            "grpc": {"address": address},
            # a free port, not the default 8000: another test process (CI runs two lanes) may
            # have an App of its own listening at the same time
            "http": {"address": f"127.0.0.1:{free_port()}"},
            "broker": {"subscriber": {"backoff_initial": 0.05}},
            "shutdown_timeout": 5,
        },
    )
    container: Any = Container(config=config)  # its async resources make providers awaitable
    # the one test double: the broker choice (an in-memory broker instead of the configured one)
    container.broker.override(providers.Resource(memory_broker))
    app = await build_app(config, "all", container)
    await app.start()
    yield container, address
    await app.stop()  # and its resources


async def stored_rows(container: Any) -> list[RealtimeWarehousing]:
    db = await container.database()
    async with db.sessions() as session:
        return list((await session.scalars(select(RealtimeWarehousing))).all())


async def test_post_report_is_saved_as_a_row(running: tuple[Any, str]) -> None:
    container, address = running
    async with grpc.aio.insecure_channel(address) as channel:
        stub = report_pb2_grpc.ReportServiceStub(channel)
        reply = await stub.PostReport(
            report_pb2.PostReportRequest(user_id="u1", event_name="click", content="hello")
        )
    assert reply.code == 0 and reply.event_id

    async def saved() -> bool:
        return len(await stored_rows(container)) == 1

    await eventually(saved)
    [row] = await stored_rows(container)
    assert (row.event_id, row.user_id, row.event_name, row.report_data) == (
        reply.event_id, "u1", "click", "hello"
    )


async def test_many_reports_make_as_many_rows(running: tuple[Any, str]) -> None:
    container, address = running
    async with grpc.aio.insecure_channel(address) as channel:
        stub = report_pb2_grpc.ReportServiceStub(channel)
        for n in range(50):
            await stub.PostReport(
                report_pb2.PostReportRequest(user_id=f"u{n % 3}", event_name="e", content=str(n))
            )

    async def saved() -> bool:
        return len(await stored_rows(container)) == 50

    await eventually(saved)
    assert sorted(int(r.report_data) for r in await stored_rows(container)) == list(range(50))


async def test_a_redelivered_event_is_stored_once(running: tuple[Any, str]) -> None:
    container, _address = running
    broker = await container.broker()
    event = RealTimeWarehousingData(
        event_id="same-id", user_id="u", event_name="e", report_data="x",
        create_time_ms=int(time.time() * 1000),
    )
    topic = container.config().topics.report
    for _ in range(3):
        await broker.publish(topic, event, key="u")
    repo = await container.realtime_repo()
    await eventually(lambda: _has_rows(repo, 1))
    assert await repo.count() == 1


async def test_repo_counts_only_new_rows(running: tuple[Any, str]) -> None:
    """`save` reports how many rows were new (SQLite sums row counts, PostgreSQL returns ids)."""
    container, _address = running
    repo = await container.realtime_repo()

    def events(*ids: str) -> list[RealTimeWarehousingData]:
        return [RealTimeWarehousingData(event_id=i, user_id="u", event_name="e") for i in ids]

    assert await repo.save(events("a", "b", "c")) == 3
    assert await repo.save(events("b", "c", "d")) == 1
    assert await repo.save(events("a")) == 0
    assert await repo.count() == 4


async def _has_rows(repo, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await repo.count() >= n


@pytest.mark.parametrize(
    ("request_fields", "problem"),
    [
        ({"user_id": "", "event_name": "e"}, "user_id is required"),
        ({"user_id": "u", "event_name": ""}, "event_name is required"),
        ({"user_id": "u", "event_name": "e", "content": "x" * 70_000}, "content is longer"),
        ({"user_id": "u", "event_name": "e", "content": "a\x00b"}, "content contains a NUL"),
        ({"user_id": "u\x00", "event_name": "e"}, "user_id contains a NUL"),
        ({"user_id": "u" * 129, "event_name": "e"}, "user_id is longer than 128 characters"),
    ],
)
async def test_invalid_report_is_refused_and_nothing_published(
    running: tuple[Any, str], request_fields: dict[str, str], problem: str
) -> None:
    container, address = running
    async with grpc.aio.insecure_channel(address) as channel:
        stub = report_pb2_grpc.ReportServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.PostReport(report_pb2.PostReportRequest(**request_fields))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (raised.value.details() or "")
    assert await (await container.realtime_repo()).count() == 0


async def test_sql_in_a_report_is_stored_as_text(running: tuple[Container, str]) -> None:
    """Every statement uses bound parameters: SQL in a field is data, never code."""
    container, address = running
    payload = "x'); DROP TABLE realtime_warehousing; --"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = report_pb2_grpc.ReportServiceStub(channel)
        await stub.PostReport(
            report_pb2.PostReportRequest(user_id="o'brien", event_name=payload, content=payload)
        )

    async def saved() -> bool:
        return len(await stored_rows(container)) == 1

    await eventually(saved)
    [row] = await stored_rows(container)
    assert (row.user_id, row.event_name, row.report_data) == ("o'brien", payload, payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\x02\xff\xfe",  # user_id: bytes that are not UTF-8 (a non-Python client)
        b"\x1a\x03\xc3\x28x",  # content: an invalid UTF-8 sequence
        b"\x12\x03\xed\xa0\x80",  # event_name: a lone surrogate, as CESU-8 writes it
        b"\xff" * 12,  # garbage: a varint that never ends
    ],
    ids=["user-id-not-utf8", "content-not-utf8", "lone-surrogate", "garbage"],
)
async def test_undecodable_report_bytes_are_invalid_argument_and_nothing_published(
    running: tuple[Any, str], payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    container, address = running
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(address) as channel:
        post = channel.unary_unary("/report.v1.ReportService/PostReport")  # raw bytes
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await post(payload, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
    assert await (await container.realtime_repo()).count() == 0
