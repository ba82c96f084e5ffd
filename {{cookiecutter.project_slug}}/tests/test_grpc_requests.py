"""Undecodable request bytes answer INVALID_ARGUMENT on every servicer of the gRPC server,
with no traceback, and the log tells a burst of them in one line plus one count per window.

The requests are raw bytes sent through a real channel (no serializer on the client), as a
client in another language or a broken one sends them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from brokerline.core.embedded import free_port
from brokerline.server.grpc import GrpcServer
from brokerline.testing.brokers import eventually
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
#: field 1 (a string) holding bytes that are not UTF-8
NOT_UTF8 = b"\x0a\x02\xff\xfe"
#: a varint that never ends
GARBAGE = b"\xff" * 12


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    server = GrpcServer(f"127.0.0.1:{free_port()}", [])
    await server.start()
    yield server
    await server.stop(5)


async def unary(address: str, method: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(method)  # no serializers: the bytes go as they are
        try:
            await call(payload, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""


def decoding_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "undecodable request" in r.getMessage()]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
    assert "Unexpected" not in caplog.text  # grpc's own line for a failing deserializer


@pytest.mark.parametrize("payload", [NOT_UTF8, GARBAGE], ids=["not-utf8", "garbage"])
async def test_undecodable_request_is_invalid_argument_without_traceback(
    server: GrpcServer, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    code, details = await unary(server.address, CHECK, payload)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "could not be decoded" in details
    assert_no_traceback(caplog)
    [record] = decoding_records(caplog)
    assert CHECK in record.getMessage()
    # the same method still answers a request it can decode
    valid = health_pb2.HealthCheckRequest(service="").SerializeToString()
    assert (await unary(server.address, CHECK, valid))[0] == grpc.StatusCode.OK


async def test_a_burst_is_one_line_then_one_count_per_window(
    server: GrpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server.request_decoding.log.window = 0.5
    codes = await asyncio.gather(*(unary(server.address, CHECK, GARBAGE) for _ in range(40)))
    assert {code for code, _ in codes} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert len(decoding_records(caplog)) == 1  # the first one, told at once
    await eventually(lambda: len(decoding_records(caplog)) == 2, timeout=5)
    assert "39 more undecodable request(s)" in decoding_records(caplog)[1].getMessage()
    await asyncio.sleep(1.2)  # quiet windows add nothing
    assert len(decoding_records(caplog)) == 2
    assert_no_traceback(caplog)


async def test_streaming_methods_refuse_undecodable_requests_too(
    server: GrpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(server.address) as channel:
        watch = channel.unary_stream(WATCH)  # a response stream (an async generator)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in watch(GARBAGE, timeout=10):
                pass
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        info = channel.stream_stream(REFLECTION)  # requests and responses both stream
        good = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
        call = info(iter([good, NOT_UTF8]), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # a decodable stream still works: the reflection service lists the health service
        listing = [reply async for reply in info(iter([good]), timeout=10)]
        names = reflection_pb2.ServerReflectionResponse.FromString(listing[0])
        assert "grpc.health.v1.Health" in str(names)
    assert_no_traceback(caplog)
