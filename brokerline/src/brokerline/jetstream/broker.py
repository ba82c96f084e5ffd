"""The NATS JetStream plugin: persistent streams, durable pull consumers, acked publishes.

- At connect, the stream of `NatsSettings.stream` (name, subjects, replicas from
  `NATS_STREAM_REPLICAS`, storage, max age, dedup window) is created if missing. An existing
  stream is left alone when it is compatible (captures the configured subjects, same storage
  and replicas); otherwise connect fails with a sentence saying what differs.
- Every publish waits for the server's acknowledgement and carries a `Nats-Msg-Id` header
  (a new id, or the caller's `MESSAGE_ID_HEADER` / `Nats-Msg-Id` header): the server drops a
  second message with the same id within the stream's duplicate window
  (`stream.duplicate_window`, NATS_STREAM_DUPLICATE_WINDOW) and acknowledges it as a
  duplicate, so a retried publish of one logical message is stored once. A message the
  stream did not take for now (no leader during a cluster election, no acknowledgement) is
  resent with the same id for up to `publish_retry_for` seconds, so a node lost mid-publish
  costs a delay, not a refusal and not a duplicate. `publish_batch` pipelines: up to
  `BATCH_WINDOW` messages are in flight while their acknowledgements come back (see
  `_jetstream_publisher`).
- Delayed publish uses JetStream message schedules (nats-server 2.12+): the message is stored
  on a schedule subject of the stream (`_delayed.<STREAM>.<id>`, hidden from topic
  consumers) with `Nats-Schedule: @at <time>` and the topic as its target; at that time the
  server stores it on the topic. The time is the publisher's clock, so clock skew between
  hosts shifts it. A stream created elsewhere without schedules refuses delayed publishes
  with a clear error.
- Consumers: see `_jetstream_consumer` (durable per group; ack, nak with delay, term). A
  subscription reads from whichever stream captures its topic, so streams that operators
  manage themselves work too.
- The core connection is shared: `request()` and core subjects still work (see `nats.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig, StreamInfo

from brokerline.core.base import Envelope, Handler, SubscribeOptions, Subscription
from brokerline.core.batch import BatchHandler, BatchOptions
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.dispatch import Dispatcher
from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.jetstream.consumer import JetStreamSubscription
from brokerline.jetstream.publisher import NO_RESPONDERS, AckedPublisher, Outgoing, subject_matches
from brokerline.jetstream.setup import answered
from brokerline.nats.broker import NatsBroker, check_shared, wildcard_safe
from brokerline.nats.connection import wire_headers
from brokerline.nats.settings import NatsSettings, StreamSettings

log = logging.getLogger("broker.jetstream")

SCHEDULE_PREFIX = "_delayed"
#: JetStream publishes in flight at once in `publish_batch`
BATCH_WINDOW = 256


class _NotYet(Exception):
    """The stream did not take a message for now (no leader, no answer): resend it."""


#: seconds of the window nats-server applies to a stream created with duplicate_window 0
SERVER_DUPLICATE_WINDOW = 120.0


def schedule_subjects(stream: str) -> str:
    return f"{SCHEDULE_PREFIX}.{stream}.>"


def wanted_config(settings: StreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.name,
        subjects=[*settings.subjects, schedule_subjects(settings.name)],
        num_replicas=settings.replicas,
        storage=StorageType(settings.storage),
        max_age=settings.max_age or None,
        duplicate_window=settings.duplicate_window,
        allow_msg_schedules=True,
    )


def incompatibilities(existing: StreamConfig, settings: StreamSettings) -> list[str]:
    """What makes an existing stream unusable with `settings` (empty: compatible)."""
    problems = []
    have = set(existing.subjects or [])
    missing = [s for s in settings.subjects if s not in have]
    if missing:
        problems.append(f"it does not capture {', '.join(missing)} (it has {sorted(have)})")
    storage = str(getattr(existing.storage, "value", existing.storage) or "file")
    if storage != settings.storage:
        problems.append(f"its storage is {storage}, not {settings.storage}")
    if (existing.num_replicas or 1) != settings.replicas:
        problems.append(
            f"it has {existing.num_replicas or 1} replicas, not {settings.replicas} "
            "(NATS_STREAM_REPLICAS)"
        )
    return problems


async def provision_stream(js: JetStreamContext, settings: StreamSettings) -> StreamInfo:
    """Create the configured stream, or check that the existing one is compatible."""
    try:
        info = await js.stream_info(settings.name)
    except nats.js.errors.NotFoundError:
        pass
    else:
        problems = incompatibilities(info.config, settings)
        if problems:
            raise BrokerError(
                f"JetStream stream {settings.name} exists but {'; '.join(problems)}; update or "
                "delete the stream, or change broker.nats.stream to match it"
            )
        window = info.config.duplicate_window
        if settings.duplicate_window and window is not None and window != settings.duplicate_window:
            # usable, but duplicates are dropped for the stream's window, not the configured one
            log.warning(
                "JetStream stream %s deduplicates message ids for %gs, not the configured "
                "broker.nats.stream.duplicate_window %gs; update the stream to change it",
                settings.name, window, settings.duplicate_window,
            )
        return info
    try:
        info = await js.add_stream(wanted_config(settings))
    except nats.js.errors.APIError as exc:
        hint = (
            "a single server holds one replica: set NATS_STREAM_REPLICAS to at most the "
            "number of servers in the JetStream cluster"
            if settings.replicas > 1 else "check the stream settings (broker.nats.stream)"
        )
        raise BrokerError(
            f"could not create JetStream stream {settings.name} with {settings.replicas} "
            f"replica(s) ({exc.description or exc}); {hint}"
        ) from None
    log.info("created JetStream stream %s for %s", settings.name, ", ".join(settings.subjects))
    return info


class JetStreamBroker(NatsBroker):
    type_name = "jetstream"
    supports_delay = True

    def __init__(self, settings: NatsSettings, *, publish_timeout: float = 5.0) -> None:
        super().__init__(settings)
        self.publish_timeout = publish_timeout
        # resends must end inside the duplicate window, or a late copy is stored twice
        window = settings.stream.duplicate_window or SERVER_DUPLICATE_WINDOW
        self._retry_for = min(settings.publish_retry_for, window / 2)
        self._resends = 0  # resends since publishes were last acknowledged at once
        self._js: JetStreamContext | None = None
        self.stream: StreamInfo | None = None
        self._acks = AckedPublisher()

    async def connect(self) -> None:
        await super().connect()
        self._js = self.client.jetstream(timeout=self.publish_timeout)
        try:
            js, stream = self._js, self.settings.stream
            self.stream = await answered(
                f"the stream {stream.name}", lambda: provision_stream(js, stream),
                self.settings.setup_retry_for,
            )
            await self._acks.start(self.client)
        except nats.js.errors.ServiceUnavailableError:
            await self.close()
            raise BrokerUnavailable(
                "the NATS server has JetStream disabled; start nats-server with -js "
                "(or jetstream {} in its config), or use the nats broker type"
            ) from None
        except BaseException:
            await self.close()
            raise

    @property
    def js(self) -> JetStreamContext:
        if self._js is None or self._client is None or self._client.is_closed:
            raise BrokerUnavailable("the jetstream broker is not connected; call connect()")
        return self._js

    # -- publishing ------------------------------------------------------------------------
    async def _send(self, envelope: Envelope) -> None:
        await self._acknowledged(await self._start_send(envelope))

    async def _send_batch(self, envelopes: Sequence[Envelope]) -> None:
        """Keep up to BATCH_WINDOW messages in flight; raise once all were answered."""
        in_flight: deque[Outgoing] = deque()
        failures: list[BaseException] = []

        async def settle_oldest() -> None:
            try:
                await self._acknowledged(in_flight.popleft())
            except BrokerError as exc:
                failures.append(exc)

        for envelope in envelopes:
            if len(in_flight) >= BATCH_WINDOW:
                await settle_oldest()
            try:
                in_flight.append(await self._start_send(envelope))
            except BrokerError as exc:
                failures.append(exc)
        while in_flight:
            await settle_oldest()
        if failures:
            raise BrokerError(
                f"{len(failures)} of {len(envelopes)} messages were not accepted: {failures[0]}"
            ) from failures[0]

    async def _start_send(self, envelope: Envelope) -> Outgoing:
        headers = wire_headers(envelope.headers, envelope.key, self.next_id())
        subject = envelope.topic
        if envelope.delay and envelope.delay > 0:
            subject = self._schedule(envelope, headers)
        message = Outgoing(
            envelope.topic, subject, envelope.payload, headers,
            time.monotonic() + self._retry_for,
        )
        try:
            await self._acks.send(self.client, message)
        except nats.errors.Error as exc:
            raise BrokerError(
                f"could not publish to JetStream subject {envelope.topic!r}: {exc}"
            ) from exc
        return message

    async def _acknowledged(self, message: Outgoing) -> None:
        """Wait until the stream acknowledged `message`, resending it while that may help.

        A refusal is a BrokerError; no acknowledgement within `publish_retry_for` is a
        BrokerUnavailable.
        """
        while True:
            try:
                await self._answer(message)
            except _NotYet as exc:
                if time.monotonic() >= message.deadline:
                    raise BrokerUnavailable(
                        f"JetStream did not acknowledge a message on {message.topic!r} "
                        f"within {self._retry_for:g}s ({exc}); check the servers and the "
                        f"health of stream {self.settings.stream.name}"
                    ) from None
                self._resending(message, str(exc))
                await asyncio.sleep(message.resend_wait())
                message.resends += 1
                message.ack = None
                with contextlib.suppress(nats.errors.Error):  # not sent: the next round
                    await self._acks.send(self.client, message)
                continue
            if self._resends:
                log.info("JetStream acknowledges publishes again (%d resends)", self._resends)
                self._resends = 0
            return

    async def _answer(self, message: Outgoing) -> None:
        """The stream's answer to the last copy of `message`; raises _NotYet to resend."""
        ack = message.ack
        if ack is None:
            raise _NotYet("the connection did not take it")
        try:
            if not ack.done():
                async with asyncio.timeout(self.publish_timeout):
                    await ack
            ack.result()
        except nats.js.errors.NoStreamResponseError:
            if await self._captured(message.topic):  # a stream without a leader for now
                raise _NotYet("the stream has no leader") from None
            raise BrokerError(
                f"no JetStream stream captures subject {message.topic!r}; add it to "
                f"broker.nats.stream.subjects (stream {self.settings.stream.name})"
            ) from None
        except nats.js.errors.APIError as exc:
            if str(exc.code) == NO_RESPONDERS:  # "JetStream system temporarily unavailable"
                raise _NotYet(exc.description or "JetStream is unavailable") from None
            raise BrokerError(
                f"JetStream refused a message on {message.topic!r}: {exc.description or exc}"
            ) from None
        except TimeoutError:
            self._acks.forget_settled()
            raise _NotYet(f"no acknowledgement within {self.publish_timeout:g}s") from None

    async def _captured(self, topic: str) -> bool:
        """Whether a stream captures `topic` (ours, or one that the server knows of).

        Asked only after "no responders": a stream without a leader answers so too.
        """
        subjects = (self.stream.config.subjects or []) if self.stream else []
        if any(subject_matches(s, topic) for s in subjects):
            return True
        try:
            await self.js.find_stream_name_by_subject(topic)
        except nats.js.errors.NotFoundError:
            return False
        except nats.errors.Error:  # no answer now (the cluster's meta leader is moving)
            pass
        return True

    def _resending(self, message: Outgoing, reason: str) -> None:
        """Count a resend; the first of an outage is logged (once, not per message)."""
        if not self._resends:
            log.warning(
                "JetStream did not acknowledge a publish on %s (%s); resending with the same "
                "message id for up to %gs", message.topic, reason, self._retry_for,
            )
        self._resends += 1

    def _schedule(self, envelope: Envelope, headers: dict[str, str]) -> str:
        """Turn `headers` into a one-shot schedule; returns the subject to publish to."""
        config = self.stream.config if self.stream else None
        name = self.settings.stream.name
        if not (config and config.allow_msg_schedules
                and schedule_subjects(name) in (config.subjects or [])):
            raise BrokerError(
                f"JetStream stream {name} does not allow scheduled messages, so it cannot "
                f"delay delivery; recreate it with allow_msg_schedules and the subject "
                f"{schedule_subjects(name)} (nats-server 2.12+), or publish without delay"
            )
        due = datetime.now(UTC) + timedelta(seconds=envelope.delay or 0)
        headers["Nats-Schedule"] = "@at " + due.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        headers["Nats-Schedule-Target"] = envelope.topic
        return f"{SCHEDULE_PREFIX}.{name}.{self.next_id()}"

    # -- subscribing -----------------------------------------------------------------------
    async def _subscribe(
        self, topic: str, handler: Handler | BatchHandler, group: str | None,
        options: SubscribeOptions | None, batch: BatchOptions | None,
    ) -> Subscription:
        options = options or SubscribeOptions()
        check_shared(self.type_name, options)
        if options.dead_letter_topic is None and wildcard_safe(topic) != topic:
            raise BrokerError(
                f"a JetStream subscription to the wildcard {topic!r} needs an explicit "
                "dead_letter_topic inside the stream; set SubscribeOptions.dead_letter_topic"
            )
        kind = Dispatcher if batch is None else BatchDispatcher
        dispatcher = kind(
            topic, group, handler,
            options=options, codec=self.codec, middleware=self.middleware, send=self._send,
            flow=self.flows.new(f"subscription {topic} (group {group})"),
        )
        subscription = JetStreamSubscription(
            topic, group, dispatcher, options, self._subscriptions.discard, batch
        )
        stream = await answered(
            f"the stream of {topic!r}", lambda: self._stream_of(topic),
            self.settings.setup_retry_for,
        )
        await subscription.start(self.js, self.client, stream, self.settings.setup_retry_for)
        self._subscriptions.add(subscription)
        return subscription

    async def _stream_of(self, topic: str) -> str:
        """The stream that captures `topic`: the configured one, or one managed elsewhere."""
        try:
            return await self.js.find_stream_name_by_subject(topic)
        except nats.js.errors.NotFoundError:
            raise BrokerError(
                f"no JetStream stream captures subject {topic!r}; add it to "
                f"broker.nats.stream.subjects (stream {self.settings.stream.name})"
            ) from None
