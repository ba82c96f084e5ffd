"""Undecodable gRPC requests answer INVALID_ARGUMENT, without a traceback, on every servicer.

grpc.aio decodes a request before the servicer sees it; when the deserializer raises (bytes
that are not the method's request message, or a string field that is not UTF-8, which a
client in another language can send), grpc answers UNKNOWN and logs a traceback per call.
`RequestDecodingInterceptor` wraps each method handler, once per method: its deserializer
returns an `UndecodableRequest` marker instead of raising, and its behaviour answers the
marker with INVALID_ARGUMENT before the servicer is called. So every servicer added to the
server gets this, the health and reflection services included.

The log gets one line for the first undecodable request, then at most one line per `window`
seconds saying how many more came (a client looping on garbage cannot flood it). Neither the
log nor the answer ever holds the request's bytes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError

log = logging.getLogger(__name__)

Behaviour = Callable[..., Any]


class UndecodableRequest:
    """What the wrapped deserializer returns for bytes it cannot decode."""

    __slots__ = ("reason",)

    def __init__(self, error: Exception) -> None:
        # protobuf's messages name the type and the fault, never the data; other
        # deserializers' (a pydantic error, say) may quote the input: only their type
        self.reason = str(error)[:200] if isinstance(error, ProtobufDecodeError) else (
            type(error).__name__
        )


class UndecodableRequestLog:
    """Logs undecodable requests: the first at once, then a count per `window` seconds."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._more = 0  # undecodable requests since the last line
        self._last = ""
        self._timer: asyncio.TimerHandle | None = None

    def record(self, method: str, peer: str, reason: str) -> None:
        self._last = f"{method} from {peer}"
        if self._timer is not None:  # within a window: counted, told at its end
            self._more += 1
            return
        log.warning(
            "undecodable request to %s answered INVALID_ARGUMENT (%s); more in the next %gs "
            "are counted, not logged", self._last, reason, self.window,
        )
        self._timer = asyncio.get_running_loop().call_later(self.window, self._end_window)

    def _end_window(self) -> None:
        self._timer = None
        if self._more:
            self.flush()
            # the burst goes on: keep counting rather than log its next request at once
            self._timer = asyncio.get_running_loop().call_later(self.window, self._end_window)

    def flush(self) -> None:
        """Log the count not told yet (at the end of a window, or when the server stops)."""
        if self._more:
            log.warning(
                "%d more undecodable request(s) answered INVALID_ARGUMENT (the last: %s)",
                self._more, self._last,
            )
            self._more = 0

    def close(self) -> None:
        self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    """Put it last among the server's interceptors: it wraps the handler the servicer has."""

    def __init__(self, undecodable_log: UndecodableRequestLog | None = None) -> None:
        self.log = undecodable_log or UndecodableRequestLog()
        # method -> (the handler as registered, its wrapped version); one entry per method
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        deserialize = handler.request_deserializer

        def deserialize_or_mark(data: bytes) -> Any:
            try:
                return deserialize(data)
            except Exception as exc:  # any failure to decode is the client's, not ours
                return UndecodableRequest(exc)

        async def refuse(request: UndecodableRequest, context: grpc.aio.ServicerContext) -> None:
            self.log.record(method, context.peer(), request.reason)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request could not be decoded ({request.reason}); send the method's "
                "request message, serialized, with every string in UTF-8",
            )

        serialize = handler.response_serializer
        if not handler.request_streaming:
            behaviour = handler.unary_stream if handler.response_streaming else handler.unary_unary
            guarded = _guard_message(behaviour, refuse)
        else:
            behaviour = handler.stream_stream if handler.response_streaming else (
                handler.stream_unary
            )
            guarded = _guard_stream(behaviour, refuse)
        if guarded is None:  # a synchronous behaviour: left as grpc runs it
            return handler
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        return make(guarded, deserialize_or_mark, serialize)


Refuse = Callable[[UndecodableRequest, grpc.aio.ServicerContext], Awaitable[None]]


def _guard_message(behaviour: Behaviour, refuse: Refuse) -> Behaviour | None:
    """Wrap a behaviour that takes one request, keeping its kind (grpc.aio looks at it)."""
    if inspect.isasyncgenfunction(behaviour):

        async def responses(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if type(request) is UndecodableRequest:
                await refuse(request, context)
            async for response in behaviour(request, context):
                yield response

        return responses
    if inspect.iscoroutinefunction(behaviour):

        async def respond(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if type(request) is UndecodableRequest:
                await refuse(request, context)
            return await behaviour(request, context)

        return respond
    return None


def _guard_stream(behaviour: Behaviour, refuse: Refuse) -> Behaviour | None:
    """Wrap a behaviour that iterates over its requests (`context.read()` is not covered)."""

    async def checked(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async for request in requests:
            if type(request) is UndecodableRequest:
                await refuse(request, context)
            yield request

    if inspect.isasyncgenfunction(behaviour):

        async def responses(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in behaviour(checked(requests, context), context):
                yield response

        return responses
    if inspect.iscoroutinefunction(behaviour):

        async def respond(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            return await behaviour(checked(requests, context), context)

        return respond
    return None
