"""Middleware: small, ordered wrappers around publishing and handling.

`on_publish` sees every outgoing envelope (add headers, count, log); `wrap_handler` wraps a
subscription's handler once, at subscribe time, so no per-message chain is built;
`wrap_batch_handler` does the same for a batch subscription's handler (one call per batch;
the identity by default, so a middleware that only wraps single handlers leaves batches
alone). The first middleware in the list is the outermost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from brokerline.core.base import Envelope, Handler, MessageContext
from brokerline.core.repeats import RepeatedLog
from brokerline.core.transient import describe_failure, is_transient

if TYPE_CHECKING:
    from brokerline.core.batch import BatchContext, BatchHandler

#: how the Dispatcher settled one delivery: acked, handed back for redelivery, or
#: dead-lettered (and then acked)
Settlement = Literal["ack", "redeliver", "dead_letter"]


class Middleware:
    """Base class: the identity on both paths. Override what you need."""

    def on_publish(self, envelope: Envelope) -> Envelope:
        return envelope

    def on_publish_batch(self, envelopes: list[Envelope]) -> list[Envelope]:
        """One `publish_batch` call; by default `on_publish` on each envelope."""
        return [self.on_publish(e) for e in envelopes]

    def wrap_handler(self, handler: Handler, topic: str, group: str | None) -> Handler:
        return handler

    def wrap_batch_handler(
        self, handler: BatchHandler, topic: str, group: str | None
    ) -> BatchHandler:
        return handler

    def on_settle(self, topic: str, group: str | None, settlement: Settlement) -> None:
        """Called once per delivery after its outcome is decided (decode errors included;
        in a batch subscription, once per message of the batch)."""


def chain_handler(
    handler: Handler, middleware: Sequence[Middleware], topic: str, group: str | None
) -> Handler:
    """Wrap `handler` in every middleware, the first one outermost."""
    for m in reversed(middleware):
        handler = m.wrap_handler(handler, topic, group)
    return handler


def chain_batch_handler(
    handler: BatchHandler, middleware: Sequence[Middleware], topic: str, group: str | None
) -> BatchHandler:
    """Wrap a batch handler in every middleware, the first one outermost."""
    for m in reversed(middleware):
        handler = m.wrap_batch_handler(handler, topic, group)
    return handler


class LoggingMiddleware(Middleware):
    """Logs each handled message at DEBUG and handler failures at WARNING.

    Without payloads or SQL parameters (`describe_failure`), and aggregated: a burst of one
    kind of failure on a topic is one line per few seconds with a count (`RepeatedLog`).
    A transient failure (a dependency down) is not logged per message at all: the
    subscription's pause and resume are (see `flow`).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("broker")

    def wrap_handler(self, handler: Handler, topic: str, group: str | None) -> Handler:
        log = self.log
        failures = RepeatedLog(log, logging.WARNING)

        async def logged(msg: Any, ctx: MessageContext) -> Any:
            started = time.perf_counter()
            try:
                result = await handler(msg, ctx)
            except Exception as exc:
                if not is_transient(exc):
                    failures.log(
                        type(exc).__name__,
                        "handler failed on %s (group %s, message %s, delivery %d): %s",
                        topic, group, ctx.message_id, ctx.redelivery_count + 1,
                        describe_failure(exc),
                    )
                raise
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "handled %s message %s in %.1f ms",
                    topic, ctx.message_id, (time.perf_counter() - started) * 1000,
                )
            return result

        return logged

    def wrap_batch_handler(
        self, handler: BatchHandler, topic: str, group: str | None
    ) -> BatchHandler:
        log = self.log
        failures = RepeatedLog(log, logging.WARNING)

        async def logged(batch: list[Any], ctx: BatchContext) -> Any:
            started = time.perf_counter()
            try:
                result = await handler(batch, ctx)
            except Exception as exc:
                if not is_transient(exc):
                    failures.log(
                        type(exc).__name__,
                        "batch handler failed on %s (group %s, %d messages, first %s): %s",
                        topic, group, len(batch), ctx.messages[0].message_id,
                        describe_failure(exc),
                    )
                raise
            if log.isEnabledFor(logging.DEBUG):
                log.debug("handled a batch of %d %s messages in %.1f ms", len(batch), topic,
                          (time.perf_counter() - started) * 1000)
            return result

        return logged
