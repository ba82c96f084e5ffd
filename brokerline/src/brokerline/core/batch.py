"""Batch subscribers: one handler call for many messages, settled message by message.

A batch handler is `async def handle(batch: list[T], ctx: BatchContext) -> BatchResult | None`;
`T` (the annotation's item type) picks the decoding, as for a single handler. Subscribe it
with `broker.subscribe_batch(topic, handle, group=..., options=..., batch=BatchOptions(...))`.

- returns None: every message is acked;
- returns `BatchResult(retry=[i], reject={j: "why"})`: message i is redelivered (a failed
  delivery: the backoff, `max_deliveries`), j is dead-lettered, the others are acked;
- raises `Retry(delay)` or any other exception: every message is redelivered after the delay
  or the backoff, each with its own delivery count (at `max_deliveries` it is dead-lettered);
- raises `Reject(reason)`: every message is dead-lettered;
- raises a transient error: the batch is held and the subscription paused, as for a single
  handler (never counted as a delivery);
- a message that cannot be decoded, or is over `max_message_bytes`, is dead-lettered before
  the call: the handler gets the others.

Indexes in a `BatchResult` are positions in `batch` (and in `ctx.messages`, which holds each
message's `MessageContext` in the same order).

The plugin contract (`BatchSource`) is small: a plugin supplies "receive up to `max_size`
messages within `max_wait`", the `Delivery` of a message, the settlement of each message of a
batch by its `Outcome` (one call per batch) and the give-back of messages it will not handle;
`subscribe_batch` builds a `BatchDispatcher` and `batch_loop`, which does the rest
(decoding, dead letters, the handler chain with one span per batch, metrics, outcomes, the
pause while a dependency is down). `BatchBuffer` is the receive step for a plugin whose
client pushes messages to a callback. The memory, NATS, JetStream and Pulsar plugins are the
examples; the conformance suite's batch half (`testing.batch_conformance`) is the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from brokerline.core.base import Delivery, MessageContext
from brokerline.core.consumer_loop import ConsumerLoop

if TYPE_CHECKING:
    from brokerline.core.batch_dispatch import BatchDispatcher
    from brokerline.core.dispatch import Outcome

M = TypeVar("M")
log = logging.getLogger("broker")


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How a batch fills: up to `max_size` messages, or what arrived within `max_wait` seconds
    of the batch's first message (a batch is never empty, and never waits for a first one)."""

    max_size: int = 100
    max_wait: float = 0.05

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {self.max_size}")
        if self.max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {self.max_wait}")


@dataclass(slots=True)
class BatchContext:
    """What a batch handler knows besides the decoded messages (read-only)."""

    topic: str
    group: str | None
    messages: list[MessageContext]  # one per message of the batch, in the same order

    def __len__(self) -> int:
        return len(self.messages)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch handler returns to settle some of its messages otherwise than by an ack.

    `retry`: positions to redeliver (each counts as a failed delivery: the backoff, or
    `retry_delay` when given, and `max_deliveries`); `reject`: positions to dead-letter now,
    with the reason. Every other message of the batch is acked.
    """

    retry: Collection[int] = ()
    reject: Mapping[int, str] = field(default_factory=dict)
    retry_delay: float | None = None


BatchHandler = Callable[[list[Any], BatchContext], Awaitable["BatchResult | None"]]


class BatchSource(Protocol[M]):
    """What a plugin supplies for batch subscriptions; `M` is its own message type."""

    async def receive(self, max_size: int, max_wait: float) -> Sequence[M]:
        """Up to `max_size` messages: waits for a first one, then at most `max_wait` seconds
        for more. If cancelled, nothing it took may be lost (keep it for the next call)."""
        ...

    def delivery(self, message: M) -> Delivery:
        """The message as the core decodes it."""
        ...

    async def settle(self, messages: Sequence[M], outcomes: Sequence[Outcome]) -> None:
        """Settle each message by its outcome (same order): ack; redeliver after
        `outcome.delay`; dead-lettered (`outcome.dead_lettered`): ack or terminate it.
        `messages` is the very sequence `receive` returned (a plugin may key on it)."""
        ...

    async def give_back(self, messages: Sequence[M]) -> None:
        """The subscription stopped before these were settled: let the broker redeliver them."""
        ...


def batch_loop(
    source: BatchSource[M], dispatcher: BatchDispatcher, batch: BatchOptions, *,
    concurrency: int, name: str,
) -> ConsumerLoop[Sequence[M]]:
    """The workers of a batch subscription: `concurrency` batches in flight at most.

    Stopping it (`ConsumerLoop.stop`) lets a batch being handled finish and be settled.
    """
    max_size, max_wait = batch.max_size, batch.max_wait

    async def receive() -> Sequence[M]:
        return await source.receive(max_size, max_wait)

    async def handle(messages: Sequence[M]) -> None:
        if not messages:
            return
        deliveries = [source.delivery(m) for m in messages]
        try:
            outcomes = await dispatcher.process_batch(deliveries)
        except asyncio.CancelledError:  # stopped mid-handler: nothing was settled
            await source.give_back(messages)
            raise
        await source.settle(messages, outcomes)

    return ConsumerLoop(
        receive, handle, concurrency=concurrency, name=name, flow=dispatcher.flow
    )


class BatchBuffer(Generic[M]):
    """`BatchSource.receive` for a plugin whose client pushes messages to a callback.

    The callback `put`s each message (no await, no wakeup); `receive` wakes when a first
    message is there, then only when `max_size` are there or `max_wait` has passed: two
    wakeups per batch, not one per message. It takes its batch at once, so a receive that is
    cancelled leaves every message in the buffer (for the next receive, or `leftovers`).
    """

    def __init__(self) -> None:
        self._items: deque[M] = deque()
        self._ready = asyncio.Event()
        self._wanted = 1  # the fewest messages a waiting receive wants
        self._waiting = 0  # receives waiting now

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: M) -> None:
        self._items.append(message)
        if len(self._items) >= self._wanted:
            self._ready.set()

    async def receive(self, max_size: int, max_wait: float) -> list[M]:
        items = self._items
        while not items:
            await self._until(1, None)
        if len(items) < max_size and max_wait > 0:
            deadline = asyncio.get_running_loop().time() + max_wait
            while len(items) < max_size and await self._until(max_size, deadline):
                pass
        # several receivers may share the buffer: one of them may have taken everything
        return [items.popleft() for _ in range(min(max_size, len(items)))]

    async def _until(self, count: int, deadline: float | None) -> bool:
        """Wait until `count` messages are there (or something changed); False at `deadline`."""
        self._wanted = min(self._wanted, count) if self._waiting else count
        self._ready.clear()
        if len(self._items) >= count:
            return True
        self._waiting += 1
        try:
            if deadline is None:
                await self._ready.wait()
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._ready.wait()
                    return True
            return False
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._wanted = 1

    def leftovers(self) -> list[M]:
        """What is still buffered, never handed to a handler (for close)."""
        left = list(self._items)
        self._items.clear()
        return left
