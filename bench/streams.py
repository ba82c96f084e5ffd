"""JetStream housekeeping between cases: an empty stream and no consumers to start from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError


@asynccontextmanager
async def stream_of(url: str, subject: str) -> AsyncIterator[tuple[JetStreamContext, str | None]]:
    """A JetStream context on `url` and the name of the stream holding `subject` (None: no
    such stream yet); the connection closes after the block."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            name: str | None = await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            name = None
        yield js, name
    finally:
        await nc.close()


async def empty_stream(url: str, subject: str) -> str | None:
    """Purge the stream that holds `subject` and delete every consumer on it.

    Every consumer, not one durable by name, so it holds whatever the consumers are called.
    Returns the stream's name, or None if no stream holds the subject yet (whoever connects
    first provisions it empty). Raises if the stream is not empty afterwards.
    """
    async with stream_of(url, subject) as (js, name):
        if name is None:
            return None
        for consumer in await js.consumers_info(name):
            await js.delete_consumer(name, consumer.name)
        await js.purge_stream(name)
        state = (await js.stream_info(name)).state
        if state.messages or state.consumer_count:
            raise RuntimeError(f"stream {name} still holds {state.messages} messages and "
                               f"{state.consumer_count} consumers after the purge")
        return name


async def stream_messages(url: str, subject: str) -> int:
    """How many messages the whole stream holding `subject` has (0: no such stream)."""
    async with stream_of(url, subject) as (js, name):
        return 0 if name is None else (await js.stream_info(name)).state.messages
