"""Finding out at connect whether the broker honours delayed delivery.

Apache Pulsar delays `deliver_after` messages on Shared subscriptions (unless the operator
turned `delayedDeliveryEnabled` off); pulsar-lite delivers them at once. Knowing which lets the
plugin refuse `publish(delay=...)` instead of delivering early without a word, and choose how
retries wait (see `pulsar_consumer`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import pulsar
from pulsar.asyncio import Client

log = logging.getLogger("broker.pulsar")


async def probe_delayed_delivery(client: Client, topic: str, url: str) -> bool:
    """Publish a message delayed by 2 s; if it arrives within 0.5 s the broker ignores delays."""
    try:
        consumer = await client.subscribe(
            topic, f"probe-{uuid.uuid4().hex}",
            consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Latest,
        )
        producer = await client.create_producer(topic, batching_enabled=False)
    except Exception as exc:  # e.g. no permission to create the probe topic: trust the docs
        log.debug("pulsar: could not probe delayed delivery (%s); assuming it works", exc)
        return True
    try:
        await producer.send(b"probe", deliver_after=timedelta(seconds=2))
        try:
            await asyncio.wait_for(consumer.receive(), 0.5)
        except TimeoutError:
            return True
        log.warning(
            "pulsar: the broker at %s delivers delayed messages at once (pulsar-lite does); "
            "publish(delay=...) is refused and retries are held in the client", url
        )
        return False
    finally:
        for step in (consumer.unsubscribe, producer.close):
            try:
                await asyncio.wait_for(step(), 5.0)
            except Exception as exc:
                log.debug("pulsar: delayed-delivery probe cleanup: %s", exc)
