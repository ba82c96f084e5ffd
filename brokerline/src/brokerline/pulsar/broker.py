"""The Apache Pulsar plugin, on pulsar-client's native asyncio API (`pulsar.asyncio`).

Works with Apache Pulsar and with pulsar-lite (the embedded default). Connecting, creating
producers and consumers, and closing use `pulsar.asyncio`; the per-message paths (send,
receive, ack) call the binding's objects underneath it, which `pulsar.asyncio` would wrap in a
future and an event-loop wakeup per message: see `pulsar_producer` and `pulsar_receiver`.
Mapping of the API:

* `group` -> the subscription name (Shared by default; Exclusive, Failover, Key_Shared by
  `SubscribeOptions.subscription_type`); no group -> an anonymous subscription that is
  deleted on close. `initial_position` defaults to Earliest (the client's default is Latest).
* `key` -> the message's partition key (on a partitioned topic it picks the partition: see
  `brokerline.pulsar.routing`); `headers` -> message properties; `delay` -> `deliver_after`.
  `publish(..., ordering_key=, event_time=, deliver_at=, sequence_id=)` sets the other Pulsar
  message fields; `sequence_id` with `PulsarSettings.producer_name` is broker-side dedupe.
* partitioned topics: subscribe to the topic's name to read every partition; the handler's
  `ctx.topic` is that name (the partition's index is the third field of `ctx.message_id`),
  and the retry-letter and dead-letter topics are named after it, not after a partition.
* `topic`: a name (`orders`, `tenant/ns/orders`, `persistent://...`, `non-persistent://...`),
  a list of names, or a compiled regex (`re.compile("orders-.*")`).
* acknowledgement: see `pulsar_consumer` (ack, hold-then-nack for per-message backoff, or a
  retry-letter topic). Dead letters are published by the Dispatcher to
  `<topic>-<subscription>-DLQ` with the failure reason in a header. The client-side
  dead-letter policy is kept as a backstop with `max_redeliver_count = max_deliveries - 1`:
  the Dispatcher never negatively acks at that count, so the policy only catches a message
  whose handler never returned (it crashed or hung the process) and moves it to the same DLQ
  instead of crash-looping the service.
* `cumulative_ack` (settings or `PulsarSubscribeOptions`): one cumulative ack per run of
  handled messages instead of one ack each; exclusive and failover subscriptions only.
* `SubscribeOptions.ack_wait` -> the ack timeout (the client refuses less than 10 s, so
  shorter values are raised to 10 s; 0 disables it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import pulsar
from pulsar.asyncio import Client, Consumer

from brokerline.core.base import (
    Broker,
    Envelope,
    Handler,
    InitialPosition,
    SubscribeOptions,
    Subscription,
    SubscriptionType,
)
from brokerline.core.batch import BatchHandler, BatchOptions
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.dispatch import Dispatcher
from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.pulsar.client import (
    BATCHING,
    COMPRESSION,
    REGEX_MODES,
    SharedClients,
    TopicNames,
    choice,
    client_kwargs,
    explain,
    service_url,
    unreachable_hint,
)
from brokerline.pulsar.consumer import PulsarSubscribeOptions, PulsarSubscription, base_topic
from brokerline.pulsar.pattern import subscribe_pattern
from brokerline.pulsar.probe import probe_delayed_delivery
from brokerline.pulsar.producer import ProducerPool, PulsarEnvelope
from brokerline.pulsar.routing import ROUTING_MODES
from brokerline.pulsar.settings import CUMULATIVE_ACK_TYPES, SINGLE_CONSUMER_TYPES, PulsarSettings

log = logging.getLogger("broker.pulsar")

CONSUMER_TYPES: dict[SubscriptionType, pulsar.ConsumerType] = {
    SubscriptionType.SHARED: pulsar.ConsumerType.Shared,
    SubscriptionType.EXCLUSIVE: pulsar.ConsumerType.Exclusive,
    SubscriptionType.FAILOVER: pulsar.ConsumerType.Failover,
    SubscriptionType.KEY_SHARED: pulsar.ConsumerType.KeyShared,
}
INITIAL_POSITIONS: dict[InitialPosition, pulsar.InitialPosition] = {
    InitialPosition.EARLIEST: pulsar.InitialPosition.Earliest,
    InitialPosition.LATEST: pulsar.InitialPosition.Latest,
}
MIN_ACK_TIMEOUT = 10.0  # seconds; the client rejects shorter ack timeouts
DELAY_PROBE_TOPIC = "__delayed_delivery_probe"

Topics = str | Sequence[str] | re.Pattern[str]


class PulsarBroker(Broker):
    type_name = "pulsar"
    supports_delay = True  # refined at connect when `delayed_delivery` is `auto`

    #: delayed-delivery probe results per service URL and probe topic (probing costs up to
    #: half a second); the topic names the namespace, whose policy can turn delays off
    _delay_probes: ClassVar[dict[tuple[str, str], bool]] = {}
    #: clients shared by the brokers of this process (one per service URL and credentials)
    _clients: ClassVar[SharedClients] = SharedClients()

    def __init__(self, settings: PulsarSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or PulsarSettings()
        self.names = TopicNames(self.settings.tenant, self.settings.namespace)
        self.url = ""
        self._client: Client | None = None
        self._client_key: tuple[Any, ...] = ()
        self._producers: ProducerPool | None = None
        self._subscriptions: set[PulsarSubscription] = set()
        # enumerated settings fail here, at construction, not at the first publish
        choice(COMPRESSION, self.settings.compression, "compression")
        choice(BATCHING, self.settings.batching_type, "batching_type")
        choice(ROUTING_MODES, self.settings.partition_routing, "partition_routing")
        self._regex_mode = choice(
            REGEX_MODES, self.settings.regex_subscription_mode, "regex_subscription_mode"
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._client is not None:
            return
        self.url = service_url(self.settings)
        kwargs = client_kwargs(self.settings, self.url)
        key = SharedClients.key(self.settings, self.url)
        try:
            client = self._clients.acquire(key, lambda: Client(self.url, **kwargs))
        except (ValueError, TypeError, pulsar.PulsarException) as exc:
            raise BrokerError(f"the Pulsar client settings are not valid: {exc}") from None
        log.info("pulsar: connecting to %s", self.url)
        # the client connects lazily: a lookup proves the address, TLS and token now. It is
        # bounded by connect_timeout: the client would retry a refused connection for the
        # whole operation_timeout (a hung handshake fails after connection_timeout)
        bound = self.settings.connect_timeout
        try:
            await asyncio.wait_for(client.get_topic_partitions(self._probe_topic()), bound)
        except Exception as exc:
            if self._clients.release(key) is not None:
                client.shutdown()
            if isinstance(exc, TimeoutError):
                # Apache Pulsar closes the connection of a token it refuses, and the client
                # retries until the bound: with a token set, the token is a suspect too
                token_hint = (
                    ", and PULSAR_JWT_TOKEN (Apache Pulsar drops the connection of a token it "
                    "refuses)" if self.settings.jwt_token is not None else ""
                )
                raise BrokerUnavailable(
                    f"Pulsar at {self.url} did not answer within {bound:g}s "
                    f"(broker.pulsar.connect_timeout); {unreachable_hint(self.url)}{token_hint}"
                ) from None
            raise explain(exc, "connecting", self.url) from None
        self._client, self._client_key = client, key
        self._producers = ProducerPool(client, self.settings, self.names, self.url)
        self.supports_delay = await self._delayed_delivery_supported()  # type: ignore[misc]
        log.info("pulsar: connected to %s", self.url)

    async def close(self, timeout: float | None = None) -> None:
        """Drain subscriptions, flush and close producers, then close the client."""
        await asyncio.gather(*(s.close(timeout) for s in list(self._subscriptions)))
        if self._producers is not None:
            await self._producers.close(timeout)
            self._producers = None
        client, self._client = self._client, None
        if client is None:
            return
        if self._clients.release(self._client_key) is None:  # another broker still uses it
            return
        try:
            await asyncio.wait_for(client.close(), timeout)
        except Exception as exc:
            log.warning("pulsar: client did not close cleanly (%s); shutting it down", exc)
            client.shutdown()

    async def healthy(self) -> bool:
        if self._client is None:
            return False
        try:
            await asyncio.wait_for(self._client.get_topic_partitions(self._probe_topic()), 5.0)
        except Exception:
            return False
        return True

    def _probe_topic(self) -> str:
        return self.names.full(DELAY_PROBE_TOPIC)

    def _connected(self) -> tuple[Client, ProducerPool]:
        if self._client is None or self._producers is None:
            raise BrokerUnavailable("the pulsar broker is not connected; call connect() first")
        return self._client, self._producers

    async def _delayed_delivery_supported(self) -> bool:
        mode = self.settings.delayed_delivery.strip().lower()
        if mode in ("on", "off"):
            return mode == "on"
        if mode != "auto":
            raise BrokerError(
                f"pulsar setting delayed_delivery={mode!r} is not valid; use auto, on or off"
            )
        key = (self.url, self._probe_topic())
        if key not in self._delay_probes:
            client, _ = self._connected()
            self._delay_probes[key] = await probe_delayed_delivery(client, key[1], self.url)
        return self._delay_probes[key]

    # -- publishing ---------------------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        msg: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        ordering_key: str | None = None,
        event_time: datetime | None = None,
        deliver_at: datetime | None = None,
        sequence_id: int | None = None,
    ) -> None:
        """Publish and wait for the broker's acceptance (a synchronous send, awaited).

        `key` is the partition (sharding) key, `ordering_key` the Key_Shared ordering key,
        `event_time` the application's event timestamp, `deliver_at` an absolute delivery time,
        `sequence_id` the message's sequence id for broker-side deduplication (needs
        `producer_name`; the broker drops a message whose id is not above the highest it has
        stored from that producer name on that topic).
        """
        envelope = self._pulsar_envelope(
            topic, msg, key, headers, delay, ordering_key, event_time, deliver_at, sequence_id
        )
        await self._publish_chain(envelope)

    async def publish_nowait(
        self,
        topic: str,
        msg: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        ordering_key: str | None = None,
        event_time: datetime | None = None,
        deliver_at: datetime | None = None,
        sequence_id: int | None = None,
    ) -> asyncio.Future[str]:
        """An asynchronous send: returns once the message is queued in the client.

        The returned future resolves to the message id when the broker has accepted it, or
        raises `BrokerError`; await it (or gather many) to know each message is stored.
        """
        _client, producers = self._connected()
        envelope = self._pulsar_envelope(
            topic, msg, key, headers, delay, ordering_key, event_time, deliver_at, sequence_id
        )
        for middleware in self.middleware:
            envelope = middleware.on_publish(envelope)
        future = await producers.send_nowait(envelope)
        future.add_done_callback(_log_unretrieved_failure)
        return future

    def _pulsar_envelope(
        self,
        topic: str,
        msg: Any,
        key: str | None,
        headers: Mapping[str, str] | None,
        delay: float | None,
        ordering_key: str | None,
        event_time: datetime | None,
        deliver_at: datetime | None,
        sequence_id: int | None = None,
    ) -> Envelope:
        if deliver_at is not None and not self.supports_delay:
            raise BrokerError(
                f"the Pulsar broker at {self.url} delivers delayed messages at once; "
                "publish without deliver_at or use an Apache Pulsar cluster"
            )
        if sequence_id is not None:
            if self.settings.producer_name is None:
                raise BrokerError(
                    "publishing with a sequence_id needs broker.pulsar.producer_name: the broker "
                    "deduplicates by (producer name, sequence id); set one or drop sequence_id"
                )
            if not 0 <= sequence_id < 1 << 63:  # the message field is a signed 64-bit integer
                raise BrokerError(
                    f"sequence_id must be between 0 and 2**63 - 1, got {sequence_id}"
                )
        envelope = self._envelope(topic, msg, key, headers, delay)
        if ordering_key is None and event_time is None and deliver_at is None and (
            sequence_id is None
        ):
            return envelope
        return PulsarEnvelope(
            envelope.topic, envelope.payload, envelope.key, envelope.headers, envelope.delay,
            ordering_key=ordering_key, event_time=event_time, deliver_at=deliver_at,
            sequence_id=sequence_id,
        )

    async def _send(self, envelope: Envelope) -> None:
        _client, producers = self._connected()
        await producers.send(envelope)

    async def _send_batch(self, envelopes: Sequence[Envelope]) -> None:
        _client, producers = self._connected()
        await producers.send_many(envelopes)

    # -- subscribing --------------------------------------------------------------------------
    async def subscribe(  # type: ignore[override]  # also takes topic lists and patterns
        self,
        topic: Topics,
        handler: Handler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
        pulsar_options: PulsarSubscribeOptions | None = None,
    ) -> Subscription:
        return await self._subscribe(topic, handler, group, options, pulsar_options, None)

    async def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
        batch: BatchOptions | None = None,
        pulsar_options: PulsarSubscribeOptions | None = None,
    ) -> Subscription:
        """A batch subscription to one topic (see `Broker.subscribe_batch`); individual acks
        (no `cumulative_ack`)."""
        if not isinstance(topic, str):
            raise BrokerError(
                "a Pulsar batch subscription reads one topic; subscribe one batch handler per "
                "topic (a partitioned topic counts as one)"
            )
        return await self._subscribe(
            topic, handler, group, options, pulsar_options, batch or BatchOptions()
        )

    async def _subscribe(
        self, topic: Topics, handler: Handler | BatchHandler, group: str | None,
        options: SubscribeOptions | None, pulsar_options: PulsarSubscribeOptions | None,
        batch: BatchOptions | None,
    ) -> Subscription:
        client, producers = self._connected()
        options = options or SubscribeOptions()
        extras = pulsar_options or PulsarSubscribeOptions()
        subscription = group or f"anonymous-{uuid.uuid4().hex[:12]}"
        is_pattern = isinstance(topic, re.Pattern)
        if isinstance(topic, re.Pattern):
            target: str | list[str] = self.names.full(topic.pattern)
            label = topic.pattern
            first_topic = None
        else:
            topics = [topic] if isinstance(topic, str) else list(topic)
            if not topics:
                raise BrokerError("subscribe needs at least one topic")
            target = [self.names.full(t) for t in topics]
            label = ",".join(topics)
            first_topic = target[0]
        retry_topic = self._retry_topic(
            extras, first_topic, subscription, options.subscription_type
        )
        if retry_topic is not None and isinstance(target, list):
            target = [*target, retry_topic]
        # a configured DLQ is shared by all source topics; else each gets <topic>-<sub>-DLQ
        dead_letter = (
            self.names.full(options.dead_letter_topic) if options.dead_letter_topic else None
        )
        single_topic = isinstance(target, list) and len(target) - (retry_topic is not None) == 1
        backstop_topic = dead_letter or (
            TopicNames.persistent(f"{first_topic}-{subscription}-DLQ") if single_topic else None
        )
        ack_timeout = self._ack_timeout(options.ack_wait)
        if batch is None:
            cumulative_ack = self._cumulative_ack(extras, options.subscription_type)
        elif extras.cumulative_ack:  # asked for this subscription: refused
            raise BrokerError(
                "a Pulsar batch subscription acks each message (a BatchResult may retry any "
                "of them); drop cumulative_ack from its PulsarSubscribeOptions"
            )
        else:  # broker.pulsar.cumulative_ack is for single-message subscriptions
            cumulative_ack = False
        kwargs: dict[str, Any] = {
            "consumer_type": CONSUMER_TYPES[options.subscription_type],
            "initial_position": INITIAL_POSITIONS[options.initial_position],
            "receiver_queue_size": self._receiver_queue_size(extras, options.concurrency, batch),
            "negative_ack_redelivery_delay_ms": int(
                self.settings.negative_ack_redelivery_delay * 1000
            ),
            "unacked_messages_timeout_ms": int(ack_timeout * 1000) if ack_timeout else None,
            "regex_subscription_mode": (
                choice(REGEX_MODES, extras.regex_subscription_mode, "regex_subscription_mode")
                if extras.regex_subscription_mode else self._regex_mode
            ),
            "is_pattern_topic": is_pattern,
        }
        if extras.consumer_name:
            kwargs["consumer_name"] = extras.consumer_name
        backstop = (
            self.settings.dead_letter_backstop
            if extras.dead_letter_backstop is None else extras.dead_letter_backstop
        )
        if backstop and options.max_deliveries >= 2:
            kwargs["dead_letter_policy"] = pulsar.ConsumerDeadLetterPolicy(
                max_redeliver_count=options.max_deliveries - 1,
                dead_letter_topic=backstop_topic,
            )
        consumer = await self._create_consumer(client, target, subscription, options, kwargs)
        flow = self.flows.new(f"subscription {label} (group {group})")

        def dispatcher_for(source_topic: str) -> Dispatcher:
            dlq = dead_letter or TopicNames.persistent(f"{source_topic}-{subscription}-DLQ")
            kind = Dispatcher if batch is None else BatchDispatcher
            return kind(
                source_topic, group, handler,
                options=dataclasses.replace(options, dead_letter_topic=dlq),
                codec=self.codec, middleware=self.middleware, send=self._send, flow=flow,
            )

        batch_dispatcher: BatchDispatcher | None = None
        if batch is not None:
            assert first_topic is not None  # one topic by name
            made = dispatcher_for(first_topic)
            assert isinstance(made, BatchDispatcher)
            batch_dispatcher = made

        live = PulsarSubscription(
            consumer, label=label, group=group, anonymous=group is None,
            dispatcher_for=dispatcher_for, flow=flow, producers=producers, retry_topic=retry_topic,
            nack_delay=self.settings.negative_ack_redelivery_delay, ack_timeout=ack_timeout,
            concurrency=options.concurrency, cumulative_ack=cumulative_ack,
            on_closed=self._subscriptions.discard,
            fixed_topic=(
                base_topic(first_topic)
                if first_topic is not None and single_topic and retry_topic is None else None
            ),
            batch=batch, batch_dispatcher=batch_dispatcher,
        )
        self._subscriptions.add(live)
        live.start()
        return live

    async def _create_consumer(
        self, client: Client, target: str | list[str], subscription: str,
        options: SubscribeOptions, kwargs: dict[str, Any],
    ) -> Consumer:
        doing = f"subscribing {subscription!r} to {target}"
        if isinstance(target, list) and len(target) == 1:
            # one topic by name: the client's single-topic consumer, without the extra
            # queue and thread hop per message of its multi-topic consumer
            target = target[0]
        try:
            if kwargs.get("is_pattern_topic") and isinstance(target, str):
                period = max(1, round(self.settings.pattern_auto_discovery_period))
                return await subscribe_pattern(client, target, subscription, period, **kwargs)
            return await client.subscribe(target, subscription, **kwargs)
        except Exception as exc:
            error = explain(exc, doing, self.url)
            if isinstance(error, BrokerUnavailable) and (
                options.subscription_type is SubscriptionType.EXCLUSIVE
            ):
                raise BrokerError(
                    f"{doing} was not accepted within the operation timeout: the exclusive "
                    "subscription probably has a consumer already; use another group or a "
                    "shared subscription type"
                ) from None
            if kwargs.get("is_pattern_topic") and "LookupError" in str(exc):
                raise BrokerError(
                    f"{doing} failed: the broker at {self.url} cannot list the topics of a "
                    "namespace, which regex subscriptions need (pulsar-lite lacks it); "
                    "subscribe to a list of topics instead"
                ) from None
            raise error from None

    def _retry_topic(
        self, extras: PulsarSubscribeOptions, first_topic: str | None, subscription: str,
        kind: SubscriptionType,
    ) -> str | None:
        wanted = extras.retry_letter_topic
        if wanted is None:
            wanted = self.settings.retry_letter_topic
        if not wanted:
            return None
        if first_topic is None:
            log.warning("pulsar: a retry-letter topic needs a topic list, not a regex; "
                        "retries of %s are negative acks", subscription)
            return None
        if not self.supports_delay:
            log.warning("pulsar: the broker at %s cannot delay delivery, so the retry-letter "
                        "topic would retry at once; retries are held and negative-acked", self.url)
            return None
        if kind in SINGLE_CONSUMER_TYPES:
            # Apache Pulsar dispatches delayed messages at once on these (delays are tracked
            # per Shared/Key_Shared dispatcher only): the retry topic would not wait
            log.warning("pulsar: a %s subscription gets delayed messages at once, so the "
                        "retry-letter topic would retry %s without backoff; retries are held "
                        "and negative-acked", kind.value, subscription)
            return None
        if isinstance(wanted, str):
            return self.names.full(wanted)
        return TopicNames.persistent(f"{first_topic}-{subscription}-RETRY")

    def _cumulative_ack(self, extras: PulsarSubscribeOptions, kind: SubscriptionType) -> bool:
        wanted = extras.cumulative_ack
        if wanted is None:
            wanted = self.settings.cumulative_ack
        if wanted and kind not in CUMULATIVE_ACK_TYPES:
            raise BrokerError(
                f"cumulative_ack needs an exclusive or failover subscription, not {kind.value} "
                "(several consumers ack independently there); turn cumulative_ack off or "
                "change the subscription_type"
            )
        return wanted

    def _receiver_queue_size(
        self, extras: PulsarSubscribeOptions, concurrency: int, batch: BatchOptions | None
    ) -> int:
        size = extras.receiver_queue_size or self.settings.receiver_queue_size
        if batch is not None:  # a batch per worker and the next one prefetched
            return max(size or 0, batch.max_size * (concurrency + 1))
        return size if size else max(10, 2 * concurrency)

    @staticmethod
    def _ack_timeout(ack_wait: float) -> float | None:
        if ack_wait <= 0:
            return None
        if ack_wait < MIN_ACK_TIMEOUT:
            log.debug("pulsar: ack_wait %.1fs raised to the client's minimum of 10s", ack_wait)
        return max(ack_wait, MIN_ACK_TIMEOUT)


def _log_unretrieved_failure(future: asyncio.Future[str]) -> None:
    """An asynchronous send that failed is logged even if nobody awaits its future."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("pulsar: an asynchronous send failed: %s", exc)
