"""A Pulsar subscription: receive, dispatch, and map each outcome onto Pulsar's primitives.

Messages come from a `pulsar_receiver.Receiver` (the binding's consumer, polled on the event
loop). Ack is the binding's `acknowledge_async`, not awaited: the client groups acks and calls
back at once (from the calling thread or its I/O thread), and the callback only logs a failure,
after which the broker redelivers the message (at-least-once). Awaiting each ack on the event
loop cost a future and a thread-safe wakeup per message.

A retry waits the delay the Dispatcher asked for, in one of two ways:

* hold, then negative-ack (default). The client's negative-ack delay is one value per
  consumer, while the Dispatcher asks for a growing backoff per message. So the message is
  held locally, still unacknowledged on the broker, for `delay - negative_ack_redelivery_delay`
  seconds and then negatively acknowledged; the broker redelivers it (redelivery count + 1)
  after the consumer's own short delay. Nothing is lost if the process dies meanwhile: the
  broker redelivers every unacknowledged message of a closed consumer. A hold is capped so it
  ends before the ack timeout would redeliver the message a second time.
* retry-letter topic (opt-in, needs broker-side delayed delivery). The message is republished
  to `<topic>-<subscription>-RETRY` with `deliver_after=delay` and a `RECONSUMETIMES`
  property (Pulsar's retry-letter convention), then acknowledged; the consumer subscribes to
  the retry topic too. Long backoffs then cost no client memory and survive restarts. When the
  broker cannot delay delivery (pulsar-lite), the plugin falls back to hold-then-nack.

A batch subscription (`subscribe_batch`, one topic) takes its batches from the same receiver
(`Receiver.next_batch`: what the client prefetched, up to `max_size`, waiting at most
`max_wait`) and settles each message of a batch as above (ack, hold-then-nack or retry
letter; a batch the close cancelled is negatively acked).

With `cumulative_ack` (exclusive and failover subscriptions) a handled message is not acked
by itself: `CumulativeAcks` acks the longest run of handled messages at once (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import _pulsar
import pulsar
from pulsar.asyncio import Consumer

from brokerline.core.base import Delivery, Envelope, Subscription
from brokerline.core.batch import BatchOptions, batch_loop
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.consumer_loop import ConsumerLoop
from brokerline.core.dispatch import ACK, Dispatcher, Outcome
from brokerline.core.errors import BrokerError
from brokerline.core.flow import FlowControl
from brokerline.pulsar.client import OK_VALUE
from brokerline.pulsar.cumulative import CumulativeAcks, Tracked
from brokerline.pulsar.delivery import PulsarDelivery
from brokerline.pulsar.producer import ProducerPool
from brokerline.pulsar.receiver import Receiver

log = logging.getLogger("broker.pulsar")

#: properties of a retry-letter message (the names of Pulsar's Java client)
RECONSUME_TIMES = "RECONSUMETIMES"
REAL_TOPIC = "REAL_TOPIC"
ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
DELAY_TIME = "DELAY_TIME"
RETRY_PROPERTIES = (RECONSUME_TIMES, REAL_TOPIC, ORIGIN_MESSAGE_ID, DELAY_TIME)

ACK_SETTLE_SECONDS = 0.3
#: the longest a close waits for the negative acks of abandoned messages to leave (a longer
#: negative-ack delay leaves them to the broker's redelivery at close, uncounted)
ABANDONED_NACK_WAIT = 2.0

_PARTITION_SUFFIX = re.compile(r"-partition-\d+$")


@dataclass(frozen=True, slots=True)
class PulsarSubscribeOptions:
    """Pulsar-only subscription settings; `None` takes the value from `PulsarSettings`.

    `retry_letter_topic`: True for `<topic>-<subscription>-RETRY`, or a topic name.
    `dead_letter_backstop`: let the client dead-letter a message whose redelivery count passed
    `max_deliveries` without the handler ever returning (it crashed or hung the consumer).
    """

    retry_letter_topic: bool | str | None = None
    receiver_queue_size: int | None = None
    consumer_name: str | None = None
    dead_letter_backstop: bool | None = None
    regex_subscription_mode: str | None = None  # persistent | non_persistent | all
    cumulative_ack: bool | None = None  # exclusive and failover subscriptions only


def base_topic(topic: str) -> str:
    """The topic a partition belongs to (dead-letter names are per topic, not per partition)."""
    return _PARTITION_SUFFIX.sub("", topic)


def _acknowledged(result: pulsar.Result) -> None:
    """The client's ack callback (its I/O thread, or the caller's): only failures matter."""
    if result.value != OK_VALUE:  # the broker will redeliver it: at-least-once, nothing lost
        log.warning("pulsar: an acknowledgement failed (%s); the message will be redelivered",
                    result.name)


class PulsarSubscription(Subscription):
    """One Pulsar consumer feeding a `Receiver`; see the module docstring for retries."""

    def __init__(
        self,
        consumer: Consumer,
        *,
        label: str,
        group: str | None,
        anonymous: bool,
        dispatcher_for: Callable[[str], Dispatcher],
        flow: FlowControl,
        producers: ProducerPool,
        retry_topic: str | None,
        nack_delay: float,
        ack_timeout: float | None,
        concurrency: int,
        cumulative_ack: bool,
        on_closed: Callable[[PulsarSubscription], None],
        fixed_topic: str | None = None,
        batch: BatchOptions | None = None,
        batch_dispatcher: BatchDispatcher | None = None,
    ) -> None:
        self.topic = label
        self.group = group
        self._consumer = consumer
        self._anonymous = anonymous
        self._dispatcher_for = dispatcher_for
        self._dispatchers: dict[str, Dispatcher] = {}  # by topic or partition name
        self._by_source: dict[str, Dispatcher] = {}  # by topic
        self._producers = producers
        self._retry_topic = retry_topic
        self._nack_delay = nack_delay
        self._ack_timeout = ack_timeout
        self._on_closed = on_closed
        self._held: set[asyncio.TimerHandle] = set()
        self._acks: set[asyncio.Task[None]] = set()
        self._nacks: list[_pulsar.Message] = []  # negative acks of this loop tick, sent together
        self._closed = False
        self._abandoned = 0  # messages whose handler the close cancelled
        self._client_consumer: _pulsar.Consumer = consumer._consumer  # the binding's object
        self._cumulative = (
            CumulativeAcks(self._client_consumer, _acknowledged) if cumulative_ack else None
        )
        self._clock = asyncio.get_running_loop().time
        self._base_topics: dict[str, str] = {}  # topic or partition name -> subscribed name
        #: the topic of every message when one topic is subscribed by name, without a retry
        #: topic (a partition's messages too): no need to ask each message for its topic
        self._fixed_topic = fixed_topic
        self._flow = flow
        name = f"pulsar:{label}:{consumer.subscription_name()}"
        self._receiver = Receiver(
            self._client_consumer, self._handle, concurrency=concurrency, name=name, flow=flow,
        )
        self._batch_workers: ConsumerLoop[Any] | None = None
        self._received_at: dict[int, float] = {}  # batch mode: id(batch) -> when received
        if batch is not None:  # its workers take batches from the receiver (not started)
            assert batch_dispatcher is not None
            self._batch_workers = batch_loop(
                self, batch_dispatcher, batch, concurrency=concurrency, name=name
            )

    def start(self) -> None:
        (self._batch_workers or self._receiver).start()

    # -- the BatchSource of a batch subscription --------------------------------------------
    async def receive(self, max_size: int, max_wait: float) -> list[_pulsar.Message]:
        batch = await self._receiver.next_batch(max_size, max_wait)
        self._received_at[id(batch)] = self._clock()  # settle gets this very list back
        return batch

    async def settle(
        self, messages: Sequence[_pulsar.Message], outcomes: Sequence[Outcome]
    ) -> None:
        acknowledge = self._client_consumer.acknowledge_async
        received_at = self._received_at.pop(id(messages), None) or self._clock()
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome is ACK or outcome.acked:  # `is`: the usual outcome, without a call
                acknowledge(message, _acknowledged)
                continue
            delivery = self._delivery(message)
            await self._retry(message, None, delivery, outcome.delay, received_at)

    async def give_back(self, messages: Sequence[_pulsar.Message]) -> None:
        self._received_at.pop(id(messages), None)
        for message in messages:
            self._abandon(message)

    # -- receiving ----------------------------------------------------------------------------
    def delivery(self, message: _pulsar.Message) -> Delivery:
        """The message as the core decodes it (once per message: kept to the calls it needs)."""
        headers = message.properties()  # a new dict on every call: ours to change
        redelivery_count = message.redelivery_count()
        topic = self._fixed_topic
        if topic is not None:
            return PulsarDelivery(message, topic, headers, redelivery_count, message.data())
        # a partition's message is the partitioned topic's: handlers, dead letters and
        # retries see the name that was subscribed to (the partition is in the message id)
        name = message.topic_name()
        topic = self._base_topics.get(name)
        if topic is None:
            topic = self._base_topics[name] = base_topic(name)
        if self._retry_topic is None or topic != self._retry_topic:
            return PulsarDelivery(message, topic, headers, redelivery_count, message.data())
        retried = PulsarDelivery(
            message, headers.get(REAL_TOPIC, topic), headers,
            int(headers.get(RECONSUME_TIMES, "0") or 0) + redelivery_count, message.data(),
        )
        if ORIGIN_MESSAGE_ID in headers:
            retried.message_id = headers[ORIGIN_MESSAGE_ID]
        for name in RETRY_PROPERTIES:
            headers.pop(name, None)
        return retried

    _delivery = delivery

    def _dispatcher(self, topic: str) -> Dispatcher:
        dispatcher = self._dispatchers.get(topic)
        if dispatcher is None:  # one per source topic: each has its own `<topic>-<sub>-DLQ`
            source = base_topic(topic)
            dispatcher = self._by_source.get(source)
            if dispatcher is None:
                dispatcher = self._by_source[source] = self._dispatcher_for(source)
            self._dispatchers[topic] = dispatcher  # also keyed by partition name: no regex
        return dispatcher

    async def _handle(self, message: _pulsar.Message) -> None:
        received_at = self._clock()
        tracked = self._cumulative.received(message) if self._cumulative else None
        delivery = self._delivery(message)
        try:
            outcome = await self._dispatcher(delivery.topic).process(delivery)
        except BaseException as exc:  # cancelled at close: not handled, the broker redelivers it
            if tracked is not None:
                self._cumulative_failed(tracked)
            if isinstance(exc, asyncio.CancelledError):
                self._abandon(message)
            raise
        if outcome.acked:
            self._ack(message, tracked)
            return
        await self._retry(message, tracked, delivery, outcome.delay, received_at)

    def _ack(self, message: _pulsar.Message, tracked: Tracked | None) -> None:
        if tracked is not None and self._cumulative is not None:
            self._cumulative.handled(tracked, message.topic_name())
        else:
            self._client_consumer.acknowledge_async(message, _acknowledged)

    def _cumulative_failed(self, tracked: Tracked) -> None:
        if self._cumulative is not None:
            self._cumulative.failed(tracked)

    async def _retry(
        self, message: _pulsar.Message, tracked: Tracked | None, delivery: Delivery,
        delay: float, received_at: float,
    ) -> None:
        if self._retry_topic is not None and delay > 0:
            if await self._republish_for_retry(message, delivery, delay):
                self._ack(message, tracked)
                return
        if tracked is not None:  # before the nack, whose redelivery may overtake the hold
            self._cumulative_failed(tracked)
        self._hold_then_nack(message, delay, received_at)

    def _abandon(self, message: _pulsar.Message) -> None:
        """The subscription closed while a handler ran: that was a delivery attempt too.

        Apache Pulsar counts a redelivery only when a consumer asks for one (negative ack, ack
        timeout), not when the consumer goes away; so ask, or a message that hangs every
        handler until the stop timeout would never reach max_deliveries and the dead-letter
        topic. Limits on Apache Pulsar: a process that dies asks nothing, so its messages come
        back uncounted; and a Shared subscription's counts are forgotten when its last
        consumer leaves.
        """
        self._abandoned += 1
        self._client_consumer.negative_acknowledge(message)
        log.debug("pulsar: %s: a handler was cancelled at close; negative-acked so that the "
                  "broker counts the attempt", self.topic)

    # -- retrying -----------------------------------------------------------------------------
    async def _republish_for_retry(
        self, message: _pulsar.Message, delivery: Delivery, delay: float
    ) -> bool:
        assert self._retry_topic is not None
        headers = dict(delivery.headers)
        headers[RECONSUME_TIMES] = str(delivery.redelivery_count + 1)
        headers[REAL_TOPIC] = delivery.topic
        headers[ORIGIN_MESSAGE_ID] = delivery.message_id
        headers[DELAY_TIME] = str(int(delay * 1000))
        envelope = Envelope(self._retry_topic, delivery.payload, delivery.key, headers, delay)
        try:
            await self._producers.send(envelope)
        except BrokerError as exc:
            log.warning("pulsar: retry-letter publish failed (%s); negative-acking instead", exc)
            return False
        return True

    def _hold_then_nack(self, message: _pulsar.Message, delay: float, received_at: float) -> None:
        loop = asyncio.get_running_loop()
        hold = delay - self._nack_delay
        if self._ack_timeout is not None:  # release before the ack timeout redelivers it too
            hold = min(hold, self._ack_timeout - (loop.time() - received_at) - 1.0)
        if hold <= 0 or self._closed:
            self._negative_acknowledge(message)
            return

        def release() -> None:
            self._held.discard(timer)
            self._negative_acknowledge(message)

        timer = loop.call_later(hold, release)
        self._held.add(timer)

    def _negative_acknowledge(self, message: _pulsar.Message) -> None:
        """Negative-ack `message`, together with the others negative-acked in this loop tick.

        One worker-thread call records them all, one after the other: nacked one call each,
        the retried messages of one batch reached the client's tracker at scattered moments
        and could leave in separate redelivery requests, so a producer batch holding two of
        them was redelivered twice (one delivery more than counted, which the client's
        dead-letter backstop then took without the reason header).
        """
        self._nacks.append(message)
        if len(self._nacks) == 1:
            asyncio.get_running_loop().call_soon(self._send_nacks)

    def _send_nacks(self) -> None:
        messages, self._nacks = self._nacks, []
        nack = self._client_consumer.negative_acknowledge

        def send() -> None:
            for message in messages:
                nack(message)

        task = asyncio.ensure_future(asyncio.to_thread(send))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    # -- closing ------------------------------------------------------------------------------
    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._flow.release()  # messages held for a dependency are negatively acknowledged
        if self._batch_workers is not None:
            await self._batch_workers.stop(timeout)
        await self._receiver.stop(timeout)
        for timer in self._held:  # held messages go back to the broker when the consumer closes
            timer.cancel()
        self._held.clear()
        if self._acks:
            await asyncio.wait(set(self._acks), timeout=timeout)
        # Acks are grouped by the client (every 100 ms); pulsar-lite was seen to redeliver
        # messages acked just before a close to the next consumer. A short pause lets the
        # group flush and the broker settle; it narrows that window, it does not close it.
        settle = ACK_SETTLE_SECONDS
        if self._abandoned:  # the client sends negative acks once their delay has passed
            settle = max(settle, min(self._nack_delay * 1.4 + 0.1, ABANDONED_NACK_WAIT))
        await asyncio.sleep(settle)
        try:
            if self._anonymous:  # nobody can come back to an anonymous subscription: drop it
                await asyncio.wait_for(self._consumer.unsubscribe(), timeout)
            else:
                await asyncio.wait_for(self._consumer.close(), timeout)
        except Exception as exc:
            log.warning("pulsar: closing the consumer of %s failed: %s", self.topic, exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.close(), timeout)
        self._on_closed(self)
