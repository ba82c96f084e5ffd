"""The Apache Kafka plugin, on aiokafka (chosen by measurement: bench/kafka_clients.py).

- Publishing: `producer.py` (idempotent, acks=all, keyed records partitioned like the Java
  client, headers, linger/batch size, compression).
- Subscribing: `consumer.py` (a consumer group per `group`, manual commits of each
  partition's settled prefix, per-key order, in-process retries, dead letters, rebalances
  without loss); `batches.py` the batch subscriptions on the same consumer.
- Topics are created on first use with `topic_partitions` partitions (`create_topics`).
- Kafka has no delayed delivery; a group's members share its partitions (`shared`, and
  `key_shared`, which a Kafka group is by nature: one key, one partition, one member).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from brokerline.core.base import (
    Broker,
    Envelope,
    Handler,
    SubscribeOptions,
    Subscription,
    SubscriptionType,
)
from brokerline.core.batch import BatchHandler, BatchOptions
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.dispatch import Dispatcher
from brokerline.core.errors import BrokerError
from brokerline.kafka.batches import KafkaBatchSubscription
from brokerline.kafka.connection import (
    TopicProvisioner,
    bootstrap_failures,
    connect_error,
    stop_client,
    where,
)
from brokerline.kafka.consumer import KafkaSubscription
from brokerline.kafka.producer import KafkaPublisher
from brokerline.kafka.settings import KafkaSettings

log = logging.getLogger("broker.kafka")

#: how a Kafka group shares a topic: its partitions are split among the members
GROUP_TYPES = frozenset({SubscriptionType.SHARED, SubscriptionType.KEY_SHARED})
HEALTH_TIMEOUT = 5.0


class KafkaBroker(Broker):
    type_name = "kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__()
        self.settings = settings
        self._topics = TopicProvisioner(settings)
        self._publisher = KafkaPublisher(settings, self._topics)
        self._subscriptions: set[Subscription] = set()
        self._connected = False

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._connected:
            return
        if not self.settings.bootstrap_servers:
            raise BrokerError(
                "no Kafka bootstrap servers are configured; set broker.address "
                "(MQ_NAME_SERVER) or broker.kafka.bootstrap_servers to host:port"
            )
        log.info("kafka: connecting to %s (%s)", where(self.settings),
                 self.settings.security_protocol)
        with bootstrap_failures() as reasons:
            try:
                await self._publisher.start()
                await self._topics.start()
            except (KafkaError, OSError) as exc:
                await self._stop_clients()
                raise connect_error(self.settings, exc, reasons) from None
        self._connected = True

    async def _stop_clients(self) -> None:
        await stop_client(self._publisher.close())
        await stop_client(self._topics.close())

    async def close(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(s.close(timeout) for s in list(self._subscriptions)))
        await self._stop_clients()
        self._connected = False

    async def healthy(self) -> bool:
        if not self._connected:
            return False
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                await self._publisher.producer.client.fetch_all_metadata()
        except Exception:
            return False
        return True

    # -- publishing ------------------------------------------------------------------------
    async def _send(self, envelope: Envelope) -> None:
        await self._publisher.send(envelope)

    async def _send_batch(self, envelopes: Sequence[Envelope]) -> None:
        await self._publisher.send_batch(envelopes)

    # -- subscribing -----------------------------------------------------------------------
    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
    ) -> Subscription:
        options = await self._prepare(topic, options)
        dispatcher = Dispatcher(
            topic, group, handler,
            options=options, codec=self.codec, middleware=self.middleware, send=self._send,
            flow=self.flows.new(f"subscription {topic} (group {group})"),
        )
        return await self._started(KafkaSubscription(
            topic, group, dispatcher, options, self.settings, self._subscriptions.discard
        ))

    async def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
        batch: BatchOptions | None = None,
    ) -> Subscription:
        options = await self._prepare(topic, options)
        dispatcher = BatchDispatcher(
            topic, group, handler,
            options=options, codec=self.codec, middleware=self.middleware, send=self._send,
            flow=self.flows.new(f"subscription {topic} (group {group})"),
        )
        return await self._started(KafkaBatchSubscription(
            topic, group, dispatcher, options, batch or BatchOptions(), self.settings,
            self._subscriptions.discard,
        ))

    async def _prepare(self, topic: str, options: SubscribeOptions | None) -> SubscribeOptions:
        """The options, checked; the topic, created if missing."""
        options = options or SubscribeOptions()
        if options.subscription_type not in GROUP_TYPES:
            raise BrokerError(
                f"the kafka broker has no {options.subscription_type.value} subscriptions (a "
                "group splits a topic's partitions among its members); use subscription_type "
                "shared or key_shared"
            )
        await self._topics.ensure(topic)
        return options

    async def _started(self, subscription: KafkaSubscription) -> Subscription:
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription
