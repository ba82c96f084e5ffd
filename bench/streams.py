"""JetStream housekeeping between cases: an empty stream and no consumers to start from."""

from __future__ import annotations

import nats
from nats.js.errors import NotFoundError


async def empty_stream(url: str, subject: str) -> str | None:
    """Purge the stream that holds `subject` and delete every consumer on it.

    Every consumer, not one durable by name, so it holds whatever the consumers are called.
    Returns the stream's name, or None if no stream holds the subject yet (whoever connects
    first provisions it empty). Raises if the stream is not empty afterwards.
    """
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            name = await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            return None
        for consumer in await js.consumers_info(name):
            await js.delete_consumer(name, consumer.name)
        await js.purge_stream(name)
        state = (await js.stream_info(name)).state
        if state.messages or state.consumer_count:
            raise RuntimeError(f"stream {name} still holds {state.messages} messages and "
                               f"{state.consumer_count} consumers after the purge")
        return name
    finally:
        await nc.close()


async def stream_messages(url: str, subject: str) -> int:
    """How many messages the whole stream holding `subject` has (0: no such stream)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            name = await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            return 0
        return (await js.stream_info(name)).state.messages
    finally:
        await nc.close()
