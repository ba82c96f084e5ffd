"""The ASGI application of the HTTP/JSON transport: routes -> servicer coroutines.

Per request: find the route (404 unknown path, 405 known path with another verb), read the
body within the limit (413), check its content type (415), build the request message (400),
then call `servicer.Method(request, context)` inside a server span that continues an incoming
`traceparent`. Every refusal is a JSON google.rpc.Status body; nothing a client sends can
make it answer 500 or log a traceback (a servicer's own bug answers 500 and is logged once).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from brokerline.server.http.context import Aborted, HttpServicerContext, peer_of
from brokerline.server.http.rules import Route, routes_for
from brokerline.server.http.status import TRANSPORT_CODE, error_body, http_status
from brokerline.server.http.transcode import BadRequest, request_message, response_json

log = logging.getLogger("brokerline.server.http")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class HttpService:
    """A servicer and the proto service it implements: `report_pb2.DESCRIPTOR.services_by_name
    ["ReportService"]`. The servicer is the one the gRPC server serves (same instance)."""

    descriptor: ServiceDescriptor
    servicer: object
    #: request headers a method reads besides its message, by method name, as (name,
    #: description): documented as header parameters in the OpenAPI document
    headers: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.descriptor.full_name


@dataclass(frozen=True)
class Endpoint:
    route: Route
    call: Callable[[Message, HttpServicerContext], Awaitable[Message]]
    request_class: type[Message]


class Reply(Exception):
    """An answer decided before the servicer runs (a refusal): status, gRPC code, message."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def endpoints_of(services: Sequence[HttpService]) -> list[Endpoint]:
    """Each annotated method's route bound to its servicer's coroutine (checked up front)."""
    by_name = {s.descriptor.full_name: s for s in services}
    endpoints = []
    for route in routes_for(s.descriptor for s in services):
        service = by_name[route.method.containing_service.full_name]
        call = getattr(service.servicer, route.method.name, None)
        if call is None or not inspect.iscoroutinefunction(call):
            raise TypeError(f"{type(service.servicer).__name__}.{route.method.name} must be an "
                            f"async method (the grpc.aio servicer of {service.name})")
        request_class = message_factory.GetMessageClass(route.method.input_type)
        endpoints.append(Endpoint(route, call, request_class))
    return endpoints


class HttpJsonApp:
    """ASGI 3 application serving `services` and, at `openapi_path`, their OpenAPI document."""

    def __init__(
        self, services: Sequence[HttpService], max_body_bytes: int,
        openapi: Callable[[], bytes] | None = None, openapi_path: str = "/openapi.json",
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.endpoints = endpoints_of(services)
        self.max_body_bytes = max_body_bytes
        self._openapi = openapi
        self._openapi_path = openapi_path if openapi is not None else ""
        self._openapi_document: bytes | None = None
        #: exact paths answered by another ASGI app before the rules (the ops endpoints, with
        #: http.ops_routes): `mount(paths, app)`
        self.mounts: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {}
        # the global provider unless given one (a test's); spans continue `traceparent`
        self._tracer = trace.get_tracer("brokerline.server.http", tracer_provider=tracer_provider)

    def mount(
        self, paths: Sequence[str], app: Callable[[Scope, Receive, Send], Awaitable[None]]
    ) -> None:
        """Answer these exact paths with `app` (an ASGI app) instead of the proto's rules."""
        for path in paths:
            self.mounts[path] = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._handle(scope, receive, send)
        except Reply as reply:
            code = TRANSPORT_CODE.get(reply.status, grpc.StatusCode.INVALID_ARGUMENT)
            await _respond(send, reply.status, error_body(code, reply.message), reply.headers)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        verb = scope["method"].upper()
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        mounted = self.mounts.get(scope["path"]) if self.mounts else None
        if mounted is not None:
            await mounted(scope, receive, send)
            return
        if self._openapi_path and path == self._openapi_path:
            await self._serve_openapi(verb, send)
            return
        endpoint, variables = self._find(verb, path)
        body = await self._read_body(scope, receive) if endpoint.route.body else b""
        if body.strip():
            _check_content_type(scope["headers"])
        try:
            request = request_message(endpoint.route, endpoint.request_class, variables,
                                      scope.get("query_string", b""), body)
        except BadRequest as exc:
            raise Reply(400, str(exc)) from None
        await self._call(endpoint, request, scope, send)

    def _find(self, verb: str, path: str) -> tuple[Endpoint, dict[str, str]]:
        allowed: list[str] = []
        for endpoint in self.endpoints:
            variables = endpoint.route.match(path)
            if variables is None:
                continue
            if endpoint.route.verb == verb:
                return endpoint, variables
            allowed.append(endpoint.route.verb)
        path = path if len(path) <= 200 else path[:200] + "..."
        if allowed:
            raise Reply(405, f"{path} answers {', '.join(sorted(set(allowed)))}, not {verb}",
                        [(b"allow", ", ".join(sorted(set(allowed))).encode())])
        raise Reply(404, f"no method answers {path}; see {self._openapi_path or 'the API'} "
                         "for the paths")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        too_large = Reply(413, f"the body is larger than the limit of {limit} bytes "
                               "(http.max_body_bytes)")
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Reply(400, "the client closed the connection before the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _call(self, endpoint: Endpoint, request: Message, scope: Scope, send: Send) -> None:
        route = endpoint.route
        headers = scope["headers"]
        carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        with self._tracer.start_as_current_span(
            route.rpc, context=propagate.extract(carrier), kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": route.method.containing_service
                        .full_name, "rpc.method": route.method.name,
                        "http.request.method": route.verb, "http.route": route.template},
        ) as span:
            context = HttpServicerContext(headers, peer_of(scope.get("client")))
            status, body = await self._invoke(endpoint, request, context, span)
            span.set_attribute("http.response.status_code", status)
            await _respond(send, status, body, [(k.encode("latin-1"), v.encode("latin-1"))
                                                for k, v in context.response_headers])

    async def _invoke(
        self, endpoint: Endpoint, request: Message, context: HttpServicerContext,
        span: trace.Span,
    ) -> tuple[int, bytes]:
        try:
            response = await endpoint.call(request, context)
        except Aborted as aborted:
            return self._failed(span, aborted.code, aborted.details)
        except Exception as exc:
            if context.code not in (None, grpc.StatusCode.OK):  # e.g. the UNIMPLEMENTED stub
                return self._failed(span, context.code, context.details)
            log.error("%s raised %s; answered 500", endpoint.route.rpc, type(exc).__name__,
                      exc_info=exc)
            span.record_exception(exc)
            return self._failed(span, grpc.StatusCode.UNKNOWN, "the server failed; see its log")
        if context.code not in (None, grpc.StatusCode.OK):
            return self._failed(span, context.code, context.details)
        if not isinstance(response, Message):
            log.error("%s returned %s, not its response message; answered 500",
                      endpoint.route.rpc, type(response).__name__)
            return self._failed(span, grpc.StatusCode.UNKNOWN, "the server failed; see its log")
        return 200, response_json(response, endpoint.route.response_body)

    def _failed(self, span: trace.Span, code: grpc.StatusCode, details: str) -> tuple[int, bytes]:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_status(Status(StatusCode.ERROR, code.name))
        return http_status(code), error_body(code, details)

    async def _serve_openapi(self, verb: str, send: Send) -> None:
        if verb not in ("GET", "HEAD"):
            raise Reply(405, f"{self._openapi_path} answers GET", [(b"allow", b"GET")])
        assert self._openapi is not None
        if self._openapi_document is None:
            self._openapi_document = self._openapi()
        await _respond(send, 200, self._openapi_document)


def _check_content_type(headers: Headers) -> None:
    content_type = next((v for k, v in headers if k == b"content-type"), b"")
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != b"application/json" and not media.endswith(b"+json"):
        shown = media.decode("latin-1")[:80] or "none"
        raise Reply(415, f"the body must be JSON: send Content-Type: application/json "
                         f"(got {shown})")


async def _respond(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *headers,
    ]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
