"""Middleware: small, ordered wrappers around publishing and handling.

`on_publish` sees every outgoing envelope (add headers, count, log); `wrap_handler` wraps a
subscription's handler once, at subscribe time, so no per-message chain is built. The first
middleware in the list is the outermost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from .base import Envelope, Handler, MessageContext


class Middleware:
    """Base class: the identity on both paths. Override what you need."""

    def on_publish(self, envelope: Envelope) -> Envelope:
        return envelope

    def wrap_handler(self, handler: Handler, topic: str, group: str | None) -> Handler:
        return handler


def chain_handler(
    handler: Handler, middleware: Sequence[Middleware], topic: str, group: str | None
) -> Handler:
    """Wrap `handler` in every middleware, the first one outermost."""
    for m in reversed(middleware):
        handler = m.wrap_handler(handler, topic, group)
    return handler


class LoggingMiddleware(Middleware):
    """Logs each handled message at DEBUG and each failure at WARNING (without payloads)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("broker")

    def wrap_handler(self, handler: Handler, topic: str, group: str | None) -> Handler:
        log = self.log

        async def logged(msg: Any, ctx: MessageContext) -> Any:
            started = time.perf_counter()
            try:
                result = await handler(msg, ctx)
            except Exception as exc:
                log.warning(
                    "handler failed on %s (group %s, message %s, delivery %d): %s",
                    topic, group, ctx.message_id, ctx.redelivery_count + 1, exc,
                )
                raise
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "handled %s message %s in %.1f ms",
                    topic, ctx.message_id, (time.perf_counter() - started) * 1000,
                )
            return result

        return logged
