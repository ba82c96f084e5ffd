"""The HTTP/JSON transport over a real server: routes from google.api.http rules, proto3 JSON,
the gRPC status mapping, every client error a JSON 4xx, keep-alive, tracing and OpenAPI.

The service is `tests/http_things.py`'s descriptor-built `things.v1.ThingService`: none of
its routes is written by hand here, they come from the method options.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from http_things import SERVICE, Thing, ThingReply, ThingServicer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from brokerline.config import HttpConfig
from brokerline.core import MessageContext
from brokerline.core.embedded import free_port
from brokerline.core.tracing import TracingMiddleware
from brokerline.memory.broker import MemoryBroker
from brokerline.server.grpc import GrpcServer, GrpcService
from brokerline.server.http import HttpServer, HttpService, RuleError, routes_of
from brokerline.testing import eventually, unique

Answer = tuple[int, dict[str, str], Any]


@pytest.fixture
def servicer() -> ThingServicer:
    return ThingServicer()


@pytest.fixture
async def server(servicer: ThingServicer) -> AsyncIterator[HttpServer]:
    cfg = HttpConfig(address=f"127.0.0.1:{free_port()}", max_body_bytes=1000)
    server = HttpServer(cfg, [HttpService(SERVICE, servicer)], title="things", version="1.2.3")
    await server.start()
    yield server
    await server.stop(5)


def call(
    port: int, method: str, path: str, body: bytes | str | None = None,
    headers: dict[str, str] | None = None, connection: http.client.HTTPConnection | None = None,
) -> Answer:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    if isinstance(body, str):
        body = body.encode()
    sent = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body, {**sent, **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    if connection is None:
        conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(data)


async def acall(server: HttpServer, *args: Any, **kwargs: Any) -> Answer:
    assert server.port is not None
    return await asyncio.to_thread(call, server.port, *args, **kwargs)


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text


# -- the routes -----------------------------------------------------------------------------


def test_routes_come_from_the_method_options() -> None:
    routes = {(r.verb, r.template): r.method.name for r in routes_of(SERVICE)}
    assert routes == {
        ("GET", "/v1/things/{thing_id}"): "GetThing",
        ("POST", "/v1/things"): "CreateThing",
        ("PUT", "/v1/things"): "CreateThing",  # additional_bindings
        ("PATCH", "/v1/things/{thing.thing_id}"): "UpdateThing",
        ("DELETE", "/v1/{thing_id=shelves/*/things/*}"): "DeleteThing",
        ("POST", "/v1/things/{thing_id}:rename"): "RenameThing",
        ("POST", "/v1/fail/{code}"): "Fail",
    }  # GrpcOnly has no rule: no route


def _service_with(rule: str, name: str) -> Any:
    proto = text_format.Parse(f"""
        name: "bad/{name}.proto" package: "bad.{name}" syntax: "proto3"
        dependency: "google/api/annotations.proto"
        message_type {{ name: "M" field {{ name: "id" number: 1 type: TYPE_STRING
                                         label: LABEL_OPTIONAL json_name: "id" }} }}
        service {{ name: "S" method {{ name: "Do" input_type: ".bad.{name}.M"
                   output_type: ".bad.{name}.M" options {{ [google.api.http] {{ {rule} }} }} }} }}
    """, descriptor_pb2.FileDescriptorProto())
    return descriptor_pool.Default().Add(proto).services_by_name["S"]


@pytest.mark.parametrize(("rule", "message"), [
    ('get: "/v1/{missing}"', "{missing} must name a singular scalar field of bad.missing.M"),
    ('post: "/v1/x" body: "nope"', "body 'nope' is not a top-level field"),
    ('get: "v1/x"', "must start with '/'"),
    ('get: "/v1/{id"', "unbalanced braces"),
], ids=["unknown-variable", "unknown-body-field", "relative-path", "braces"])
def test_a_rule_that_cannot_be_served_is_refused_naming_the_method(
    rule: str, message: str
) -> None:
    name = {"missing": "missing", "nope": "nope", '"v1/x"': "relative", '{id"': "braces"}
    key = next(v for k, v in name.items() if k in rule)
    with pytest.raises(RuleError) as raised:
        routes_of(_service_with(rule, key))
    assert f"bad.{key}.S.Do" in str(raised.value) and message in str(raised.value)


# -- requests in, proto3 JSON out -----------------------------------------------------------


async def test_get_takes_the_path_variable_and_the_rest_from_the_query(
    server: HttpServer, servicer: ThingServicer
) -> None:
    status, _, body = await acall(
        server, "GET", "/v1/things/t%2F1?name=n%20m&size=5&active=true&tags=a&tags=b&inner.key=k")
    assert status == 200
    assert list(body) == ["thing", "note"]  # the proto's field order
    assert body == {"thing": {"thingId": "t/1", "name": "n m", "size": "5", "active": True,
                              "tags": ["a", "b"], "inner": {"key": "k"}, "count": 0},
                    "note": "got"}
    assert servicer.calls[-1][1] == Thing(thing_id="t/1", name="n m", size=5, active=True,
                                          tags=["a", "b"], inner={"key": "k"})


@pytest.mark.parametrize("verb", ["POST", "PUT"])
async def test_body_star_is_the_whole_request_in_json_or_proto_names(
    server: HttpServer, verb: str
) -> None:
    body = {"thingId": "t2", "name": "n", "size": "7", "tags": ["x"], "inner": {"key": "k"}}
    status, _, answer = await acall(server, verb, "/v1/things", json.dumps(body))
    assert status == 200 and answer["thing"]["thingId"] == "t2" and answer["note"] == "created"
    status, _, answer = await acall(server, verb, "/v1/things", '{"thing_id": "t3", "size": 8}')
    assert status == 200 and answer["thing"]["thingId"] == "t3" and answer["thing"]["size"] == "8"


async def test_body_field_and_a_nested_path_variable(
    server: HttpServer, servicer: ThingServicer
) -> None:
    status, _, answer = await acall(server, "PATCH", "/v1/things/t9?mask=name",
                                    '{"name": "renamed", "thingId": "ignored"}')
    assert status == 200, answer
    assert answer["thing"]["thingId"] == "t9"  # the path wins over the body
    assert answer["thing"]["name"] == "renamed" and answer["note"] == "updated name"


async def test_a_multi_segment_variable_a_custom_verb_and_response_body(
    server: HttpServer,
) -> None:
    status, _, answer = await acall(server, "DELETE", "/v1/shelves/s1/things/t2")
    assert status == 200 and answer["note"] == "deleted shelves/s1/things/t2"
    status, _, answer = await acall(server, "POST", "/v1/things/t4:rename", '{"name": "n"}')
    assert status == 200
    assert answer["thingId"] == "t4" and answer["name"] == "n"  # response_body: thing only
    assert "note" not in answer


async def test_the_servicer_sees_the_headers_as_metadata_and_the_peer(
    server: HttpServer, servicer: ThingServicer
) -> None:
    await acall(server, "GET", "/v1/things/t1", headers={"X-Request-Id": "r-1"})
    context = servicer.calls[-1][2]
    assert ("x-request-id", "r-1") in context.invocation_metadata()
    assert context.peer().startswith("ipv4:127.0.0.1:")


async def test_one_servicer_instance_answers_grpc_and_http(
    server: HttpServer, servicer: ThingServicer
) -> None:
    def add(servicer_: Any, grpc_server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            servicer_.CreateThing, request_deserializer=Thing.FromString,
            response_serializer=ThingReply.SerializeToString)
        grpc_server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "things.v1.ThingService", {"CreateThing": handler})])

    grpc_server = GrpcServer(f"127.0.0.1:{free_port()}",
                             [GrpcService("things.v1.ThingService", servicer, add)])
    await grpc_server.start()
    try:
        async with grpc.aio.insecure_channel(grpc_server.address) as channel:
            create = channel.unary_unary("/things.v1.ThingService/CreateThing",
                                         Thing.SerializeToString, ThingReply.FromString)
            reply = await create(Thing(thing_id="over-grpc"), timeout=10)
    finally:
        await grpc_server.stop(5)
    status, _, answer = await acall(server, "POST", "/v1/things", '{"thingId": "over-http"}')
    assert reply.note == answer["note"] == "created" and status == 200
    assert [c[1].thing_id for c in servicer.calls] == ["over-grpc", "over-http"]


async def test_keep_alive_serves_many_calls_on_one_connection(server: HttpServer) -> None:
    assert server.port is not None

    def several() -> set[int]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        ports = set()
        for n in range(20):
            status, headers, _ = call(0, "POST", "/v1/things", json.dumps({"thingId": str(n)}),
                                      connection=conn)
            assert status == 200 and headers.get("connection") != "close"
            assert conn.sock is not None
            ports.add(conn.sock.getsockname()[1])
        conn.close()
        return ports

    assert len(await asyncio.to_thread(several)) == 1  # one TCP connection for all 20


# -- errors ----------------------------------------------------------------------------------

#: gRPC status -> HTTP status (the README's table; grpc-gateway's mapping)
MAPPING = [
    ("INVALID_ARGUMENT", 400), ("FAILED_PRECONDITION", 400), ("OUT_OF_RANGE", 400),
    ("UNAUTHENTICATED", 401), ("PERMISSION_DENIED", 403), ("NOT_FOUND", 404),
    ("ALREADY_EXISTS", 409), ("ABORTED", 409), ("RESOURCE_EXHAUSTED", 429),
    ("CANCELLED", 499), ("INTERNAL", 500), ("UNKNOWN", 500), ("DATA_LOSS", 500),
    ("UNIMPLEMENTED", 501), ("UNAVAILABLE", 503), ("DEADLINE_EXCEEDED", 504),
]


@pytest.mark.parametrize(("code", "status"), MAPPING, ids=[c for c, _ in MAPPING])
async def test_context_abort_maps_to_the_http_status_and_a_status_body(
    server: HttpServer, code: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    got, _, body = await acall(server, "POST", f"/v1/fail/{code}")
    assert got == status
    assert body == {"code": grpc.StatusCode[code].value[0], "message": f"aborted with {code}",
                    "details": []}
    assert_no_traceback(caplog)


async def test_set_code_and_the_unimplemented_stub_are_statuses_too(server: HttpServer) -> None:
    status, _, body = await acall(server, "POST", "/v1/fail/set_code")
    assert (status, body["code"], body["message"]) == (404, 5, "no such thing (set_code)")
    status, _, body = await acall(server, "POST", "/v1/fail/unimplemented")
    assert (status, body["code"], body["message"]) == (501, 12, "Method not implemented!")


async def test_a_servicer_bug_answers_500_without_its_message(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    status, _, body = await acall(server, "POST", "/v1/fail/bug")
    assert (status, body["code"]) == (500, 2)
    assert "bug" not in body["message"]  # the exception's text stays in the server's log
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Fail raised RuntimeError" in errors[0].getMessage()


CLIENT_ERRORS = [
    ("malformed-json", "POST", "/v1/things", "{not json", {}, 400, "not valid JSON"),
    ("not-an-object", "POST", "/v1/things", "[1, 2]", {}, 400, "must be a JSON object"),
    ("not-utf8", "POST", "/v1/things", b'{"name": "\xff"}', {}, 400, "UTF-8"),
    ("unknown-field", "POST", "/v1/things", '{"colour": "red"}', {}, 400, "colour"),
    ("wrong-type", "POST", "/v1/things", '{"count": "many"}', {}, 400, "count"),
    ("wrong-content-type", "POST", "/v1/things", '{"name": "n"}',
     {"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),
    ("too-large", "POST", "/v1/things", json.dumps({"name": "x" * 2000}), {}, 413,
     "limit of 1000 bytes"),
    ("unknown-query-parameter", "GET", "/v1/things/t?colour=red", None, {}, 400, "colour"),
    ("bad-bool", "GET", "/v1/things/t?active=yes", None, {}, 400, "true or false"),
    ("bad-int", "GET", "/v1/things/t?size=big", None, {}, 400, "size"),
    ("query-with-body-star", "POST", "/v1/things?name=n", "{}", {}, 400, "in the body"),
    ("unknown-path", "GET", "/v2/nothing", None, {}, 404, "no method answers /v2/nothing"),
    ("wrong-method", "DELETE", "/v1/things", None, {}, 405, "answers POST, PUT, not DELETE"),
]


@pytest.mark.parametrize(("verb", "path", "body", "headers", "status", "says"),
                         [c[1:] for c in CLIENT_ERRORS], ids=[c[0] for c in CLIENT_ERRORS])
async def test_each_client_error_is_one_clear_4xx_with_a_json_body(
    server: HttpServer, verb: str, path: str, body: Any, headers: dict[str, str], status: int,
    says: str, caplog: pytest.LogCaptureFixture,
) -> None:
    got, got_headers, answer = await acall(server, verb, path, body, headers)
    assert got == status, answer
    assert set(answer) == {"code", "message", "details"} and says in answer["message"], answer
    assert got_headers["content-type"] == "application/json"
    if status == 405:
        assert got_headers["allow"] == "POST, PUT"
    assert_no_traceback(caplog)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000,
                                  '{"inner": ' * 50_000 + "{}" + "}" * 50_000],
                         ids=["deep-array", "deep-object"])
def test_json_nested_too_deeply_is_a_400_not_a_crash(body: str) -> None:
    from brokerline.server.http.rules import routes_of
    from brokerline.server.http.transcode import BadRequest, request_message

    route = next(r for r in routes_of(SERVICE) if r.verb == "POST" and r.template == "/v1/things")
    with pytest.raises(BadRequest, match="nested too deeply"):
        request_message(route, Thing, {}, b"", body.encode())


async def test_a_chunked_body_over_the_limit_is_413_too(server: HttpServer) -> None:
    assert server.port is not None

    def chunked() -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        chunks = iter([b'{"name": "', b"x" * 600, b"y" * 600, b'"}'])
        conn.request("POST", "/v1/things", chunks, {"Content-Type": "application/json"},
                     encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    status, body = await asyncio.to_thread(chunked)
    assert status == 413 and body["code"] == 8


async def test_a_call_in_flight_finishes_when_the_server_stops(servicer: ThingServicer) -> None:
    server = HttpServer(HttpConfig(address=f"127.0.0.1:{free_port()}"),
                        [HttpService(SERVICE, servicer)])
    await server.start()
    in_flight = asyncio.create_task(acall(server, "POST", "/v1/fail/slow"))
    await eventually(lambda: len(servicer.calls) == 1)
    await server.stop(5)
    status, _, body = await in_flight
    assert (status, body["note"]) == (200, "finished")
    with pytest.raises(ConnectionRefusedError):  # and nothing listens any more
        await acall(server, "GET", "/v1/things/t")


async def test_a_taken_port_is_one_sentence_naming_the_setting(server: HttpServer) -> None:
    other = HttpServer(HttpConfig(address=server.address), [HttpService(SERVICE, ThingServicer())])
    with pytest.raises(OSError) as raised:
        await other.start()
    assert "set http.address (HTTP_ADDRESS) to a free host:port" in str(raised.value)


async def test_garbage_instead_of_http_is_refused_without_a_traceback(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert server.port is not None

    def garbage() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), 10) as sock:
            sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
            return sock.recv(1000)

    assert (await asyncio.to_thread(garbage)).startswith(b"HTTP/1.1 400")
    assert_no_traceback(caplog)
    for _ in range(30):  # a client sending garbage on and on: each refused, not each logged
        assert (await asyncio.to_thread(garbage)).startswith(b"HTTP/1.1 400")
    lines = [r for r in caplog.records if r.getMessage().startswith("Invalid HTTP request")]
    assert len(lines) <= 1, [r.getMessage() for r in lines]


def test_the_garbage_warning_is_logged_once_a_window_with_the_count_held_back() -> None:
    import time

    from brokerline.server.listener import GARBAGE, GarbageRequestFilter

    limit = GarbageRequestFilter(window=0.2)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, None, None)

    assert limit.filter(record(GARBAGE))
    assert [limit.filter(record(GARBAGE)) for _ in range(4)] == [False] * 4
    assert limit.filter(record("another warning"))  # other lines are untouched
    time.sleep(0.25)
    told = record(GARBAGE)
    assert limit.filter(told) and "(4 more since the last such line" in told.getMessage()


# -- tracing ---------------------------------------------------------------------------------


async def test_traceparent_continues_into_the_span_and_the_published_event() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    broker = MemoryBroker()
    broker.middleware.append(TracingMiddleware("memory", tracer_provider=provider))
    await broker.connect()
    topic = unique("http-traced")
    seen: list[MessageContext] = []

    async def handler(msg: dict, ctx: MessageContext) -> None:  # type: ignore[type-arg]
        seen.append(ctx)

    await broker.subscribe(topic, handler, group=unique("group"))

    class Publishing(ThingServicer):
        async def CreateThing(self, request: Any, context: Any) -> Any:  # noqa: N802
            await broker.publish(topic, {"thing": request.thing_id})
            return ThingReply(note="published")

    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    http_server = HttpServer(HttpConfig(address=f"127.0.0.1:{free_port()}"),
                             [HttpService(SERVICE, Publishing())], tracer_provider=provider)
    await http_server.start()
    try:
        status, _, _ = await acall(http_server, "POST", "/v1/things", '{"thingId": "t"}',
                                   headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        await eventually(lambda: len(seen) == 1)
    finally:
        await http_server.stop(5)
        await broker.close(timeout=5)
    assert status == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    call_span = spans["/things.v1.ThingService/CreateThing"]
    assert call_span.kind is SpanKind.SERVER
    assert call_span.parent is not None and f"{call_span.parent.span_id:016x}" == parent_id
    assert f"{call_span.context.trace_id:032x}" == trace_id
    assert call_span.attributes is not None
    assert call_span.attributes["http.route"] == "/v1/things"
    assert call_span.attributes["http.response.status_code"] == 200
    assert seen[0].headers["traceparent"].split("-")[1] == trace_id  # the event's trace


# -- OpenAPI ---------------------------------------------------------------------------------


async def test_the_openapi_document_is_served_and_valid(server: HttpServer) -> None:
    from openapi_spec_validator import validate

    status, _, document = await acall(server, "GET", "/openapi.json")
    assert status == 200
    validate(document)
    assert document["info"] == {"title": "things", "version": "1.2.3",
                                "description": document["info"]["description"]}
    paths = document["paths"]
    assert set(paths) == {"/v1/things/{thing_id}", "/v1/things", "/v1/things/{thing.thing_id}",
                          "/v1/{thing_id}", "/v1/things/{thing_id}:rename", "/v1/fail/{code}"}
    get = paths["/v1/things/{thing_id}"]["get"]
    names = {p["name"]: p["in"] for p in get["parameters"]}
    assert names["thing_id"] == "path" and names["inner.key"] == "query"
    assert names["tags"] == "query" and "requestBody" not in get
    assert set(paths["/v1/things"]) == {"post", "put"}
    post = paths["/v1/things"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/things.v1.Thing"}
    thing = document["components"]["schemas"]["things.v1.Thing"]["properties"]
    assert thing["thingId"] == {"type": "string"} and thing["size"]["type"] == "string"
    assert post["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/google.rpc.Status"}


def test_headers_a_method_reads_are_header_parameters_of_its_operations() -> None:
    from openapi_spec_validator import validate

    service = HttpService(SERVICE, ThingServicer(),
                          headers={"CreateThing": [("Idempotency-Key", "a retry key")]})
    document = HttpServer(HttpConfig(), [service]).openapi()
    validate(document)
    for verb in ("post", "put"):  # the method's every binding
        parameters = document["paths"]["/v1/things"][verb]["parameters"]
        assert {"name": "Idempotency-Key", "in": "header", "required": False,
                "description": "a retry key", "schema": {"type": "string"}} in parameters
    get = document["paths"]["/v1/things/{thing_id}"]["get"]["parameters"]
    assert all(p["in"] != "header" for p in get)
