"""The acknowledgement rules of a batch subscription (see `batch` for the list).

`BatchDispatcher` is the `Dispatcher` with a batch handler: the same dead-letter topic,
headers and logging, the same `max_deliveries` count (each message's own), the same hold
while a dependency is down, and the same settle hooks, called once per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from brokerline.core.base import Delivery, MessageContext
from brokerline.core.batch import BatchContext, BatchResult
from brokerline.core.codec import Codec, batch_item_type
from brokerline.core.dispatch import ACK, AnyHandler, Dispatcher, Outcome, log
from brokerline.core.errors import DecodeError, Reject, Retry
from brokerline.core.flow import Released
from brokerline.core.middleware import Middleware, chain_batch_handler
from brokerline.core.transient import describe_failure


class BatchDispatcher(Dispatcher):
    """Decodes a batch of deliveries, calls the batch handler once, decides each outcome."""

    def _bind(self, handler: AnyHandler, codec: Codec, middleware: list[Middleware]) -> None:
        self._decode = codec.decoder_for_type(batch_item_type(handler))
        self._handler = chain_batch_handler(handler, middleware, self.topic, self.group)

    async def process(self, delivery: Delivery, order_key: str | None = None) -> Outcome:
        del order_key  # a batch keeps the order it was received in
        return (await self.process_batch([delivery]))[0]

    async def process_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """One outcome per delivery, in the same order."""
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        decoded: list[Any] = []
        contexts: list[MessageContext] = []
        positions: list[int] = []  # of each decoded message among the deliveries
        limit = self.options.max_message_bytes
        group = self.group
        for position, delivery in enumerate(deliveries):
            if limit is not None and len(delivery.payload) > limit:
                reason = f"oversized: {len(delivery.payload)} bytes > {limit}"
                outcomes[position] = await self._dead_letter(delivery, reason)
                continue
            try:
                msg = self._decode(delivery.payload, delivery.headers.get("content-type"))
            except DecodeError as exc:
                outcomes[position] = await self._dead_letter(delivery, f"decode error: {exc}")
                continue
            decoded.append(msg)
            delivery.group = group  # the delivery is the handler's MessageContext
            contexts.append(delivery)
            positions.append(position)
        if decoded:
            handled = [deliveries[p] for p in positions]
            batch_outcomes = await self._handled(decoded, contexts, handled)
            for position, outcome in zip(positions, batch_outcomes, strict=True):
                outcomes[position] = outcome
        settled = [outcome or ACK for outcome in outcomes]
        if self._settle_hooks:
            for outcome in settled:
                self._settled(outcome)
        return settled

    async def _handled(
        self, decoded: list[Any], contexts: list[MessageContext], deliveries: list[Delivery]
    ) -> list[Outcome]:
        """Call the handler on the decoded messages; the outcome of each."""
        try:
            result = await self._call(decoded, BatchContext(self.topic, self.group, contexts))
        except Released:  # closing while the batch waited for a dependency: hand it back
            return [self._released(d) for d in deliveries]
        except Reject as exc:
            return [await self._dead_letter(d, f"rejected: {exc}") for d in deliveries]
        except Exception as exc:  # the whole batch failed: each message is one failed delivery
            delay = exc.delay if isinstance(exc, Retry) else None
            failure = describe_failure(exc)
            return [await self._failed(d, failure, delay) for d in deliveries]
        if result is None:
            return [ACK] * len(deliveries)
        problem = _result_problem(result, len(deliveries))
        if problem is not None:  # a bug in the handler: its batch counts as failed
            log.error("batch handler of %s (group %s): %s", self.topic, self.group, problem)
            return [await self._failed(d, problem, None) for d in deliveries]
        return await self._partly(result, deliveries)

    async def _partly(self, result: BatchResult, deliveries: list[Delivery]) -> list[Outcome]:
        outcomes = [ACK] * len(deliveries)
        for position in result.retry:
            outcomes[position] = await self._failed(
                deliveries[position], "the batch handler asked to retry it", result.retry_delay
            )
        for position, reason in result.reject.items():
            outcomes[position] = await self._dead_letter(
                deliveries[position], f"rejected: {reason}"
            )
        return outcomes


def _result_problem(result: object, count: int) -> str | None:
    """Why a batch handler's return value cannot be applied (None when it can)."""
    if not isinstance(result, BatchResult):
        return f"it returned a {type(result).__name__}; return None or a BatchResult"
    for position in [*result.retry, *result.reject]:
        if not (isinstance(position, int) and 0 <= position < count):
            return (
                f"its BatchResult names message {position!r} of a batch of {count}; use "
                "positions in the batch it received (0 to len(batch) - 1)"
            )
    return None
