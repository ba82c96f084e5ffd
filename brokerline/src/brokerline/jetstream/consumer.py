"""A JetStream subscription: a pull consumer per group, settled with ack / nak(delay) / term.

- `group` is a durable consumer, named from the group and the topic (a group may read many
  topics of one stream); no group is an ephemeral consumer the server forgets when idle.
- The Dispatcher's outcome maps to: ack; nak with the backoff delay (the server redelivers
  and counts the delivery); term for a message moved to the dead-letter topic.
- `max_deliver` is `max_deliveries + 1`: the Dispatcher dead-letters at `max_deliveries`; the
  extra delivery lets it do so even when the last attempt died with the process.
- `max_ack_pending` is sized to the concurrency (in-flight handlers, plus room for the
  messages waiting out a nak delay), not the server's default of 1000.
- A message held longer than half of `ack_wait` (its handler is slow, it waits in the local
  queue, or it is held while a dependency is down) reports progress (`+WPI`), so it is not
  mistaken for one a dead consumer had; `ack_wait` is the time to notice a crashed consumer.
- While a dependency is down (`flow`), the subscription asks for no more messages; the ones
  it holds keep reporting progress, so an outage burns none of their deliveries.

Pulling. Instead of nats-py's `fetch()` (a future, a timeout and a uuid per message), the
subscription keeps its own pull requests outstanding, like the Go client's `Consume`: it asks
the server for up to `prefetch` messages, and asks again as soon as half of them are handled,
so the next messages are already on their way while the current ones run. Messages and the
server's status replies (request expired, no messages, heartbeat) arrive on one inbox
subscription whose callback hands each message on in stream order: with `concurrency` 1 it
is handled right there, otherwise `concurrency` workers take it from a local queue. A status
reply names its request by the reply subject, which ends that request; a request that never
gets one (a reconnect) is forgotten after its expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as ClientSubscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from brokerline.core.base import Delivery, InitialPosition, SubscribeOptions, Subscription
from brokerline.core.batch import BatchBuffer, BatchOptions, batch_loop
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.consumer_loop import ConsumerLoop
from brokerline.core.dispatch import Dispatcher, Outcome
from brokerline.core.errors import BrokerError
from brokerline.jetstream.setup import answered
from brokerline.nats.connection import split_headers

log = logging.getLogger("broker.jetstream")

#: seconds a pull request waits on the server for messages (also how long close() may wait
#: for the last ones: a message sent to a request nobody reads waits out ack_wait)
FETCH_WAIT = 1.0
#: a request with no status reply this long after its expiry is considered gone
REQUEST_GRACE = 2.0
#: seconds before asking again after the server refused a pull request (409 and the like)
REFUSED_PAUSE = 0.5
#: an ephemeral consumer (no group) is removed by the server after this many idle seconds
EPHEMERAL_IDLE = 60.0
STATUS = "Status"
HEARTBEAT = "100"


def durable_name(group: str, topic: str) -> str:
    """A valid, stable consumer name for (group, topic): readable, with a hash for uniqueness."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", f"{group}__{topic}")[:48]
    digest = hashlib.sha1(f"{group}\0{topic}".encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def max_ack_pending(options: SubscribeOptions, batch: BatchOptions | None = None) -> int:
    return 2 * prefetch(options, batch) + 8 if batch else options.concurrency * 4 + 16


def prefetch(options: SubscribeOptions, batch: BatchOptions | None = None) -> int:
    """Messages asked for ahead of the handlers (below max_ack_pending, which also holds naks).

    A batch subscription asks for a batch per worker and one more, so the next batch is on
    its way while the current ones are handled.
    """
    if batch is not None:
        return batch.max_size * (options.concurrency + 1)
    return options.concurrency * 2 + 8


@dataclass(slots=True)
class _PullRequest:
    token: str
    remaining: int  # messages the server may still send for it
    forget_at: float  # monotonic time after which it is considered gone


class JetStreamSubscription(Subscription):
    def __init__(
        self, topic: str, group: str | None, dispatcher: Dispatcher, options: SubscribeOptions,
        on_close: Callable[[Subscription], None], batch: BatchOptions | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        self._dispatcher = dispatcher
        self._options = options
        self._batch = batch
        self._prefetch = prefetch(options, batch)
        self._direct = options.concurrency == 1 and batch is None
        self._requests: deque[_PullRequest] = deque()
        self._held = 0  # messages received and not yet settled
        self._settled = asyncio.Event()
        self._settled.set()
        self._more = asyncio.Event()  # wakes the pull loop: room for more, or a request ended
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        # id(message) -> (message, when it arrived): every message in hand, queued or being
        # handled, for progress reports; Msg itself is unhashable
        self._running: dict[int, tuple[Msg, float]] = {}
        self._flow = dispatcher.flow
        name = f"jetstream:{topic}:{group or '-'}"
        self._buffer: BatchBuffer[Msg] = BatchBuffer()
        # where a message waits for a worker
        self._enqueue: Callable[[Msg], None] = self._queue.put_nowait
        self._workers: ConsumerLoop[Any]
        if batch is None:
            self._workers = ConsumerLoop(
                self._queue.get, self._handle, concurrency=options.concurrency, name=name,
                flow=self._flow,
            )
        else:  # batches are taken from what the pull requests brought
            assert isinstance(dispatcher, BatchDispatcher)
            self._enqueue = self._buffer.put
            self._workers = batch_loop(
                self, dispatcher, batch, concurrency=options.concurrency, name=name
            )
        self._on_close = on_close
        self._client: NatsClient | None = None
        self._inbox: ClientSubscription | None = None
        self._inbox_prefix = ""
        self._next_api = ""
        self._sequence = 0
        self._pause_until = 0.0
        self._refusals = 0  # pull requests refused since the server last served one
        self._returned: list[Msg] = []  # arrived after close(): given back once requests end
        self._puller: asyncio.Task[None] | None = None
        self._progress: asyncio.TimerHandle | None = None
        self._closed = False

    # -- starting ------------------------------------------------------------------------------
    async def start(
        self, js: JetStreamContext, client: NatsClient, stream: str, retry_for: float = 0.0
    ) -> None:
        """Create (or find) the consumer, then pull; `retry_for`: see `jetstream.setup`."""
        options = self._options
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=options.ack_wait,
            max_deliver=options.max_deliveries + 1,
            max_ack_pending=max_ack_pending(options, self._batch),
            deliver_policy=(
                DeliverPolicy.NEW
                if options.initial_position is InitialPosition.LATEST else DeliverPolicy.ALL
            ),
            inactive_threshold=None if self.group else EPHEMERAL_IDLE,
            filter_subject=self.topic,
        )
        try:
            name = await answered(
                f"the consumer of {self.topic!r}", lambda: self._consumer(js, stream, config),
                retry_for,
            )
        except nats.js.errors.APIError as exc:
            raise BrokerError(
                f"could not create the JetStream consumer for {self.topic!r} on stream "
                f"{stream} ({exc}); check that the stream's subjects include the topic"
            ) from exc
        self._client = client
        self._next_api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
        self._inbox_prefix = client.new_inbox()
        self._inbox = await client.subscribe(f"{self._inbox_prefix}.*", cb=self._receive)
        if not self._direct:
            self._workers.start()
        self._puller = asyncio.create_task(self._pull(), name=f"jetstream-pull:{self.topic}")
        self._schedule_progress()

    async def _consumer(self, js: JetStreamContext, stream: str, config: ConsumerConfig) -> str:
        """The consumer's name: a group's durable is reused as it is, else created."""
        if self.group:
            config.durable_name = config.name = durable_name(self.group, self.topic)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                return (await js.consumer_info(stream, config.durable_name)).name
        return (await js.add_consumer(stream, config)).name

    # -- pulling -------------------------------------------------------------------------------
    async def _pull(self) -> None:
        """Keep up to `prefetch` messages requested or in hand; ask again at half."""
        flow = self._flow
        while not self._closed:
            if flow.reason is not None:  # a dependency is down: ask for nothing more
                await flow.wait_open()
                continue
            pause = self._pause_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            self._forget_expired()
            requested = sum(r.remaining for r in self._requests)
            room = self._prefetch - requested - self._held
            if room >= max(1, self._prefetch // 2) or (room > 0 and not self._requests):
                try:
                    await self._request(room)
                except nats.errors.Error as exc:  # disconnected: the client reconnects
                    log.warning("%s: pull request failed: %s", self.topic, exc)
                    await asyncio.sleep(0.5)
                    continue
            self._more.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FETCH_WAIT + REQUEST_GRACE):
                    await self._more.wait()

    async def _request(self, batch: int) -> None:
        assert self._client is not None
        self._sequence += 1
        token = str(self._sequence)
        body = {"batch": batch, "expires": int(FETCH_WAIT * 1e9)}
        self._requests.append(
            _PullRequest(token, batch, time.monotonic() + FETCH_WAIT + REQUEST_GRACE)
        )
        await self._client.publish(
            self._next_api, json.dumps(body).encode(), reply=f"{self._inbox_prefix}.{token}"
        )

    def _forget_expired(self) -> None:
        now = time.monotonic()
        while self._requests and self._requests[0].forget_at < now:
            self._end_request(self._requests[0])

    def _end_request(self, request: _PullRequest) -> None:
        self._requests.remove(request)
        self._more.set()

    def _count_arrival(self) -> None:
        """A message counts against the oldest request: the server serves them in order."""
        if self._refusals:
            self._served_again()
        if self._requests:
            oldest = self._requests[0]
            oldest.remaining -= 1
            if oldest.remaining <= 0:
                self._requests.popleft()

    def _on_status(self, msg: Msg, status: str) -> None:
        if status == HEARTBEAT:
            return
        token = msg.subject.rsplit(".", 1)[-1]
        request = next((r for r in self._requests if r.token == token), None)
        if request is not None:  # expired (408), nothing to send (404), or refused
            self._end_request(request)
        if status in ("404", "408"):
            if self._refusals:
                self._served_again()
        else:  # e.g. 409 leadership change, 503 no leader, consumer deleted
            self._pause_until = time.monotonic() + REFUSED_PAUSE
            # one line per outage, not per request (a cluster election refuses many)
            self._refusals += 1
            if self._refusals == 1:
                log.warning("%s: the server answered a pull request with %s %s; asking "
                            "again every %gs", self.topic, status, _description(msg, status),
                            REFUSED_PAUSE)

    def _served_again(self) -> None:
        log.info("%s: pull requests are served again (%d were refused)",
                 self.topic, self._refusals)
        self._refusals = 0

    # -- receiving -----------------------------------------------------------------------------
    async def _receive(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and not msg.data and (status := headers.get(STATUS)):
            self._on_status(msg, status)
            return
        self._count_arrival()
        if self._closed:  # arrived for a request made before close(): given back by close()
            self._returned.append(msg)
            return
        self._held += 1
        self._settled.clear()
        self._running[id(msg)] = (msg, time.monotonic())
        if self._direct:
            await self._handle(msg)
        else:
            self._enqueue(msg)

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._settle(msg, await self._dispatcher.process(to_delivery(msg)))
        except asyncio.CancelledError:  # stopped mid-handler: hand it back for redelivery
            await self._give_back([msg])
            raise
        finally:
            self._running.pop(id(msg), None)
            self._done()

    # -- the BatchSource of a batch subscription --------------------------------------------
    async def receive(self, max_size: int, max_wait: float) -> list[Msg]:
        return await self._buffer.receive(max_size, max_wait)

    def delivery(self, message: Msg) -> Delivery:
        return to_delivery(message)

    async def settle(self, messages: Sequence[Msg], outcomes: Sequence[Outcome]) -> None:
        for message, outcome in zip(messages, outcomes, strict=True):
            await self._settle(message, outcome)
            self._running.pop(id(message), None)
            self._done()

    async def give_back(self, messages: Sequence[Msg]) -> None:
        await self._give_back(list(messages))
        for message in messages:
            self._running.pop(id(message), None)
            self._done()

    async def _settle(self, msg: Msg, outcome: Outcome) -> None:
        try:
            if outcome.dead_lettered:
                await msg.term()
            elif outcome.acked:
                await msg.ack()
            else:
                await msg.nak(delay=outcome.delay)
        except nats.errors.Error as exc:  # the server redelivers it after ack_wait
            log.warning("could not settle a message of %s: %s", self.topic, exc)

    async def _give_back(self, msgs: list[Msg]) -> None:
        """Nak messages this subscription will not handle, so another consumer gets them.

        While a pull request of ours is still open, an immediate nak would bring the message
        straight back to it: closing would burn through its deliveries (max_deliver) in a
        few milliseconds. So then the redelivery waits until those requests have expired.
        """
        delay = FETCH_WAIT + REQUEST_GRACE if self._requests else None
        for msg in msgs:
            with contextlib.suppress(Exception):
                await msg.nak(delay=delay)

    def _done(self) -> None:
        self._held -= 1
        if self._held == 0:
            self._settled.set()
        if self._held <= self._prefetch // 2:
            self._more.set()

    # -- reporting progress --------------------------------------------------------------------
    def _schedule_progress(self) -> None:
        period = self._options.ack_wait / 4
        self._progress = asyncio.get_running_loop().call_later(period, self._report_progress)

    def _report_progress(self) -> None:
        """Tell the server that messages held past half of ack_wait are still being worked on."""
        since = time.monotonic() - self._options.ack_wait / 2
        for msg, started in list(self._running.values()):
            if started <= since:
                task = asyncio.ensure_future(msg.in_progress())
                task.add_done_callback(_ignore_result)
        if not self._closed:
            self._schedule_progress()

    # -- closing -------------------------------------------------------------------------------
    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flow.release()  # messages held for a dependency are given back
        if self._puller is not None:  # it sees _closed and stops asking for more
            self._more.set()
            await asyncio.wait([self._puller], timeout=_left(deadline))
            self._puller.cancel()
        # Outstanding requests end within FETCH_WAIT; what they still bring is given back.
        while self._requests and (deadline is None or time.monotonic() < deadline):
            self._forget_expired()
            await asyncio.sleep(0.02)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), _left(deadline))
        await self._workers.stop(_left(deadline))
        while not self._queue.empty():  # queued but never handled
            self._buffer.put(self._queue.get_nowait())
        for queued in self._buffer.leftovers():
            self._running.pop(id(queued), None)
            self._returned.append(queued)
        returned, self._returned = self._returned, []
        await self._give_back(returned)
        if self._progress is not None:
            self._progress.cancel()
        if self._inbox is not None:
            with contextlib.suppress(Exception):
                await self._inbox.unsubscribe()
        self._on_close(self)


def _description(msg: Msg, status: str) -> str:
    """A status reply's description, one line (nats-py leaves the headers in it when the
    status line has none, as in `503` with `Nats-Subject`)."""
    text = (msg.headers or {}).get("Description", "")
    line = text.split("\r\n", 1)[0].split("\n", 1)[0].strip()
    return line or ("no responders: the consumer has no leader now" if status == "503" else "")


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed progress report is retried on the next tick


def to_delivery(msg: Msg) -> Delivery:
    headers, key, msg_id = split_headers(msg.headers)
    stream, stream_seq, delivered, timestamp_ns = ack_metadata(msg)
    return Delivery(
        msg.subject,
        key,
        headers,
        msg_id or f"{stream}:{stream_seq}",
        max(0, delivered - 1),
        datetime.fromtimestamp(timestamp_ns / 1e9, UTC) if timestamp_ns else None,
        payload=msg.data,
    )


def ack_metadata(msg: Msg) -> tuple[str, int, int, int]:
    """(stream, stream sequence, deliveries, timestamp ns) from the message's ack subject.

    `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the newer
    form with a domain and account hash after `$JS.ACK`. Parsed by hand: nats-py's
    `Msg.metadata` builds several objects per message.
    """
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return tokens[2], int(tokens[5]), int(tokens[4]), int(tokens[7])
    if len(tokens) >= 11:
        return tokens[4], int(tokens[7]), int(tokens[6]), int(tokens[9])
    meta = msg.metadata  # an unknown form: let nats-py parse (or reject) it
    stamp = int(meta.timestamp.timestamp() * 1e9) if meta.timestamp else 0
    return meta.stream, meta.sequence.stream, meta.num_delivered, stamp
