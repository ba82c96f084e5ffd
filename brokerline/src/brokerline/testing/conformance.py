"""The broker conformance suite: the behaviour every broker plugin must have, as a base class.

`BrokerConformance` holds the tests; a test class that inherits it runs them all on the brokers
its `broker_factory` fixture makes. brokerline runs it on each of its own plugins (memory, NATS
core, JetStream, Pulsar: `tests/test_conformance.py`), and a plugin of your own runs it the
same way::

    import pytest_asyncio

    from brokerline.testing import BrokerConformance, connected_brokers


    class TestMyBroker(BrokerConformance):
        @pytest_asyncio.fixture
        async def broker_factory(self, my_server):
            async with connected_brokers(lambda: MyBroker(url=my_server.url)) as connect:
                yield connect

The factory is a coroutine function: each call returns a new, connected broker, and every
broker it made is closed after the test (`connected_brokers` does both). All brokers of one
test must reach the same broker server, as the services of one deployment do: the suite
checks that consumers of one group share messages across connections. The `broker` fixture
(brokerline's pytest plugin) is one broker from that factory.

Real plugins run against real broker processes; nothing here is mocked. Topics and groups
are unique per test (`unique`), so tests may share one server. A broker that cannot delay
delivery (`supports_delay = False`) skips the delayed-publish test; every other test applies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from brokerline.core import (
    DLQ_REASON,
    Backoff,
    Broker,
    Handler,
    MessageContext,
    Reject,
    Retry,
    SubscribeOptions,
)
from brokerline.testing.batch_conformance import BatchConformance
from brokerline.testing.brokers import (
    FAST,
    BrokerFactory,
    collect_dead_letters,
    eventually,
    unique,
)


class Order(pydantic.BaseModel):
    order_id: int
    item: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


class BrokerConformance(BatchConformance):
    """The conformance tests; inherit them in a `Test...` class that provides `broker_factory`.

    Batch subscribers (`subscribe_batch`) have their tests in `BatchConformance`, inherited.

    Not collected itself (its name does not start with `Test`). The `asyncio` mark lets the
    tests run in pytest-asyncio's strict mode as well as in auto mode.
    """

    pytestmark = pytest.mark.asyncio

    async def test_bytes_round_trip(self, broker: Broker) -> None:
        topic = unique("bytes")
        got: list[bytes] = []

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            got.append(msg)

        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, b"\x00\x01binary\xff")
        await eventually(lambda: got == [b"\x00\x01binary\xff"])

    async def test_dict_round_trip(self, broker: Broker) -> None:
        topic = unique("dict")
        got: list[dict[str, Any]] = []

        async def handler(msg: dict[str, Any], ctx: MessageContext) -> None:
            got.append(msg)

        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, {"a": 1, "b": ["x", None]})
        await eventually(lambda: got == [{"a": 1, "b": ["x", None]}])

    async def test_pydantic_and_dataclass_round_trip(self, broker: Broker) -> None:
        orders, points = unique("orders"), unique("points")
        got: list[Any] = []

        async def on_order(msg: Order, ctx: MessageContext) -> None:
            got.append(msg)

        async def on_point(msg: Point, ctx: MessageContext) -> None:
            got.append(msg)

        await broker.subscribe(orders, on_order, group=unique("g"))
        await broker.subscribe(points, on_point, group=unique("g"))
        await broker.publish(orders, Order(order_id=7, item="book"))
        await broker.publish(points, Point(x=1, y=2))
        await eventually(lambda: len(got) == 2)
        assert Order(order_id=7, item="book") in got
        assert Point(x=1, y=2) in got

    async def test_protobuf_round_trip(self, broker: Broker) -> None:
        topic = unique("proto")
        got: list[StringValue] = []

        async def handler(msg: StringValue, ctx: MessageContext) -> None:
            got.append(msg)

        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, StringValue(value="hello"))
        await eventually(lambda: len(got) == 1)
        assert isinstance(got[0], StringValue) and got[0].value == "hello"

    async def test_handlers_that_never_suspend_leave_the_event_loop_to_other_tasks(
        self, broker: Broker
    ) -> None:
        """A backlog handled by handlers that never await must not starve the process's other
        tasks (health checks, timers, the client's own): they run while it is worked off."""
        topic, n = unique("busy"), 600
        ticks = 0
        seen_at: list[int] = []

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            seen_at.append(ticks)  # how often the other task ran so far

        async def other_task() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        await broker.subscribe(topic, handler, group=unique("g"))
        ticker = asyncio.create_task(other_task())
        try:
            await broker.publish_batch(topic, [b"x"] * n)
            await eventually(lambda: len(seen_at) == n, timeout=30)
        finally:
            ticker.cancel()
        # while the backlog was handled (first to last message), the other task went on
        assert seen_at[-1] - seen_at[0] >= 5, (seen_at[0], seen_at[-1])

    async def test_key_and_headers_preserved(self, broker: Broker) -> None:
        topic = unique("meta")
        seen: list[MessageContext] = []

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            seen.append(ctx)

        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, b"x", key="user-42", headers={"trace": "abc", "n": "1"})
        await eventually(lambda: len(seen) == 1)
        ctx = seen[0]
        assert ctx.topic.endswith(topic)
        assert ctx.key == "user-42"
        assert ctx.headers["trace"] == "abc" and ctx.headers["n"] == "1"
        assert ctx.message_id
        assert ctx.redelivery_count == 0
        if ctx.publish_time is not None:  # a broker that stamps messages (NATS core does not)
            assert abs((datetime.now(UTC) - ctx.publish_time).total_seconds()) < 60, ctx

    async def test_one_group_splits_messages_and_handles_each_once(
        self, broker_factory: BrokerFactory
    ) -> None:
        topic, group = unique("split"), unique("workers")
        handled: Counter[int] = Counter()
        by_consumer: Counter[str] = Counter()

        def handler_for(name: str) -> Handler:
            async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
                handled[msg["n"]] += 1
                by_consumer[name] += 1
                await asyncio.sleep(0.005)  # lets the other consumer take its share

            return handler

        first, second = await broker_factory(), await broker_factory()
        await first.subscribe(topic, handler_for("first"), group=group)
        await second.subscribe(topic, handler_for("second"), group=group)
        publisher = await broker_factory()
        await asyncio.sleep(0.3)  # both consumers registered with the broker before messages flow
        for n in range(60):
            await publisher.publish(topic, {"n": n})
        await eventually(lambda: sum(handled.values()) >= 60)
        await asyncio.sleep(0.3)
        assert set(handled) == set(range(60))
        assert all(count == 1 for count in handled.values()), "a message was handled twice"
        assert by_consumer["first"] > 0 and by_consumer["second"] > 0

    async def test_two_groups_each_receive_all(self, broker: Broker) -> None:
        topic = unique("fanout")
        got: dict[str, list[int]] = {"a": [], "b": []}

        def handler_for(name: str) -> Handler:
            async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
                got[name].append(msg["n"])

            return handler

        await broker.subscribe(topic, handler_for("a"), group=unique("a"))
        await broker.subscribe(topic, handler_for("b"), group=unique("b"))
        await asyncio.sleep(0.1)
        for n in range(20):
            await broker.publish(topic, {"n": n})
        await eventually(lambda: len(got["a"]) == 20 and len(got["b"]) == 20)
        assert sorted(got["a"]) == sorted(got["b"]) == list(range(20))

    async def test_returning_handler_acks(self, broker: Broker) -> None:
        topic, group = unique("ack"), unique("g")
        calls: list[int] = []

        async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
            calls.append(msg["n"])

        await broker.subscribe(
            topic, handler, group=group, options=SubscribeOptions(backoff=FAST, ack_wait=2)
        )
        await broker.publish(topic, {"n": 1})
        await eventually(lambda: calls == [1])
        await asyncio.sleep(2.5)  # past ack_wait: an unacked message would have come back
        assert calls == [1]

    async def test_raising_handler_is_redelivered_with_growing_count(self, broker: Broker) -> None:
        topic = unique("retry")
        counts: list[int] = []
        times: list[float] = []

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            counts.append(ctx.redelivery_count)
            times.append(asyncio.get_running_loop().time())
            if len(counts) < 3:
                raise RuntimeError("not yet")

        options = SubscribeOptions(max_deliveries=5, backoff=Backoff(initial=0.2, multiplier=2.0))
        await broker.subscribe(topic, handler, group=unique("g"), options=options)
        await broker.publish(topic, b"work")
        await eventually(lambda: len(counts) == 3)
        assert counts == [0, 1, 2]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] >= 0.15, f"first redelivery came after {gaps[0]:.3f}s, before the backoff"
        assert gaps[1] >= 0.3, f"second redelivery came after {gaps[1]:.3f}s, backoff did not grow"

    async def test_after_max_deliveries_message_is_dead_lettered(self, broker: Broker) -> None:
        topic, group = unique("poison"), unique("g")
        attempts: list[int] = []
        dead = await collect_dead_letters(broker, f"{topic}-{group}-DLQ")

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            attempts.append(ctx.redelivery_count)
            raise ValueError("boom")

        options = SubscribeOptions(max_deliveries=3, backoff=FAST)
        await broker.subscribe(topic, handler, group=group, options=options)
        await broker.publish(topic, b"poison", key="k1")
        await eventually(lambda: len(dead) == 1)
        await asyncio.sleep(0.5)
        assert attempts == [0, 1, 2]
        payload, ctx = dead[0]
        assert payload == b"poison"
        assert ctx.key == "k1"
        assert "ValueError: boom" in ctx.headers[DLQ_REASON]

    async def test_undecodable_message_is_dead_lettered_without_retry(
        self,
        broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        topic, group = unique("garbage"), unique("g")
        handled: list[Order] = []
        dead = await collect_dead_letters(broker, f"{topic}-{group}-DLQ")

        async def handler(msg: Order, ctx: MessageContext) -> None:
            handled.append(msg)

        options = SubscribeOptions(max_deliveries=5, backoff=FAST)
        await broker.subscribe(topic, handler, group=group, options=options)
        await broker.publish(topic, b"\xff not json")
        # pydantic quotes the input it refused: a payload, so neither the log nor the reason may
        await broker.publish(topic, {"order_id": "secret-value-17", "item": 1})
        await broker.publish(topic, Order(order_id=1, item="ok"))
        await eventually(lambda: len(dead) == 2 and len(handled) == 1)
        await asyncio.sleep(0.5)
        assert len(dead) == 2
        reasons = [ctx.headers[DLQ_REASON] for _, ctx in dead]
        assert all(reason.startswith("decode error") for reason in reasons)
        assert any("order_id: Input should be a valid integer" in reason for reason in reasons)
        assert not any("secret-value" in reason for reason in reasons), reasons
        assert "secret-value" not in caplog.text
        assert all(ctx.headers["x-deliveries"] == "1" for _, ctx in dead)

    async def test_reject_dead_letters_at_once_and_retry_redelivers(self, broker: Broker) -> None:
        topic, group = unique("explicit"), unique("g")
        attempts: Counter[str] = Counter()
        dead = await collect_dead_letters(broker, f"{topic}-{group}-DLQ")

        async def handler(msg: dict[str, str], ctx: MessageContext) -> None:
            attempts[msg["kind"]] += 1
            if msg["kind"] == "reject":
                raise Reject("customer does not exist")
            if msg["kind"] == "retry" and ctx.redelivery_count == 0:
                raise Retry("database busy", delay=0.1)

        options = SubscribeOptions(max_deliveries=5, backoff=FAST)
        await broker.subscribe(topic, handler, group=group, options=options)
        await broker.publish(topic, {"kind": "reject"})
        await broker.publish(topic, {"kind": "retry"})
        await eventually(lambda: len(dead) == 1 and attempts["retry"] == 2)
        await asyncio.sleep(0.3)
        assert attempts == Counter({"reject": 1, "retry": 2})
        assert dead[0][1].headers[DLQ_REASON] == "rejected: customer does not exist"

    async def test_close_waits_for_in_flight_handlers(
        self, broker_factory: BrokerFactory
    ) -> None:
        topic, group = unique("drain"), unique("g")
        consumer = await broker_factory()
        started, finished = asyncio.Event(), []

        async def slow(msg: bytes, ctx: MessageContext) -> None:
            started.set()
            await asyncio.sleep(0.5)
            finished.append(msg)

        await consumer.subscribe(topic, slow, group=group)
        publisher = await broker_factory()
        await asyncio.sleep(0.1)
        await publisher.publish(topic, b"in-flight")
        await asyncio.wait_for(started.wait(), 10)
        await consumer.close(timeout=5)
        assert finished == [b"in-flight"]

    async def test_publish_batch(self, broker: Broker) -> None:
        topic = unique("batch")
        got: list[int] = []

        async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
            got.append(msg["n"])

        await broker.subscribe(topic, handler, group=unique("g"))
        await asyncio.sleep(0.1)
        await broker.publish_batch(topic, [{"n": n} for n in range(100)])
        await eventually(lambda: len(got) == 100)
        assert sorted(got) == list(range(100))

    async def test_delayed_publish(self, broker: Broker) -> None:
        if not broker.supports_delay:
            pytest.skip(f"the {broker.type_name} broker has no delayed delivery")
        topic = unique("delayed")
        received_at: list[float] = []
        loop = asyncio.get_running_loop()

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            received_at.append(loop.time())

        await broker.subscribe(topic, handler, group=unique("g"))
        await asyncio.sleep(0.1)
        sent_at = loop.time()
        await broker.publish(topic, b"later", delay=1.0)
        await eventually(lambda: len(received_at) == 1)
        assert received_at[0] - sent_at >= 0.9

    async def test_concurrency_is_bounded(self, broker: Broker) -> None:
        topic = unique("bounded")
        in_flight, peak, done = 0, 0, []

        async def slow(msg: dict[str, int], ctx: MessageContext) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            done.append(msg["n"])

        options = SubscribeOptions(concurrency=4, ordered=False)
        await broker.subscribe(topic, slow, group=unique("g"), options=options)
        await asyncio.sleep(0.1)
        await broker.publish_batch(topic, [{"n": n} for n in range(24)])
        await eventually(lambda: len(done) == 24, timeout=20)
        assert peak <= 4, f"{peak} handlers ran at once with concurrency 4"
        assert peak >= 2, "handlers never overlapped: concurrency had no effect"

    async def test_same_key_is_handled_one_at_a_time_in_order(self, broker: Broker) -> None:
        topic = unique("ordered")
        active: Counter[str] = Counter()
        seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
        overlap_across_keys = False

        async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
            nonlocal overlap_across_keys
            key = ctx.key or ""
            assert active[key] == 0, f"two messages of key {key} were handled at once"
            active[key] += 1
            overlap_across_keys = overlap_across_keys or sum(active.values()) > 1
            await asyncio.sleep(0.01)
            seen[key].append(msg["n"])
            active[key] -= 1

        options = SubscribeOptions(concurrency=8)
        await broker.subscribe(topic, handler, group=unique("g"), options=options)
        await asyncio.sleep(0.1)
        for n in range(45):
            await broker.publish(topic, {"n": n}, key="abc"[n % 3])
        await eventually(lambda: sum(map(len, seen.values())) == 45, timeout=20)
        for key, numbers in seen.items():
            assert numbers == sorted(numbers), f"key {key} was handled out of order: {numbers}"
        assert overlap_across_keys, "different keys never ran concurrently"
