"""JetStream set-up requests (stream, consumer) asked again while the server does not answer.

A service starting while its server restarts, or while a cluster elects a meta leader, sees
its stream or consumer request time out (the connection reconnects underneath) or get
"JetStream system temporarily unavailable". Both pass within seconds, so such a request is
asked again for up to `NatsSettings.setup_retry_for` seconds instead of ending the start-up;
after that the start-up fails with one sentence. The requests are idempotent: asking for a
stream or a durable consumer that the lost first request created answers with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors

from brokerline.core.errors import BrokerUnavailable

log = logging.getLogger("broker.jetstream")

T = TypeVar("T")

#: the JetStream API error code of "JetStream system temporarily unavailable"
TEMPORARILY_UNAVAILABLE = 10008
#: seconds between two attempts
RETRY_PAUSE = 0.5


def _passing(exc: Exception) -> bool:
    """Whether `exc` says the server is away for now (restarting, electing), not a refusal."""
    if isinstance(exc, nats.errors.TimeoutError):
        return True
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code == TEMPORARILY_UNAVAILABLE


async def answered(what: str, request: Callable[[], Awaitable[T]], retry_for: float) -> T:
    """`request()`'s answer, asked again while the server does not answer for now.

    `what` names the request in the log and in the error (e.g. "the stream EVENTS").
    """
    deadline = time.monotonic() + retry_for
    warned = False
    while True:
        try:
            result = await request()
        except (nats.errors.TimeoutError, nats.js.errors.APIError) as exc:
            if not _passing(exc):
                raise
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"JetStream did not answer the request for {what} within {retry_for:g}s "
                    f"({exc}); check that the NATS servers are up and JetStream is healthy, "
                    "or raise broker.nats.setup_retry_for"
                ) from None
            if not warned:
                log.warning("JetStream did not answer the request for %s (%s); asking again "
                            "for up to %gs", what, exc, retry_for)
                warned = True
            await asyncio.sleep(RETRY_PAUSE)
            continue
        if warned:
            log.info("JetStream answered the request for %s", what)
        return result
