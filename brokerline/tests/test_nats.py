"""NATS core and JetStream features beyond the conformance suite, against a real nats-server."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from brokerline.core import MESSAGE_ID_HEADER, BrokerError, MessageContext
from brokerline.core.embedded import EmbeddedBroker
from brokerline.jetstream.broker import JetStreamBroker
from brokerline.nats.broker import NatsBroker, RequestTimeout
from brokerline.nats.embedded import nats_server
from brokerline.testing import connected_brokers, eventually, nats_test_settings, unique


@pytest.fixture
async def connect(module_nats_server: EmbeddedBroker) -> AsyncIterator[Any]:
    """Connects NATS (`jetstream=False`) or JetStream brokers; closes them after the test."""

    def make(jetstream: bool = False, **overrides: Any) -> NatsBroker:
        settings = nats_test_settings(module_nats_server.url, **overrides)
        return JetStreamBroker(settings) if jetstream else NatsBroker(settings)

    async with connected_brokers(make) as connected:
        yield connected


# -- NATS core -----------------------------------------------------------------------------


async def test_a_broker_outage_logs_its_connection_errors_aggregated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every reconnect attempt fails while the server is down: one line per kind of error
    (and a count later), not one a second for the whole outage."""
    with nats_server() as own:
        own.start()
        broker = NatsBroker(nats_test_settings(own.url, reconnect_wait=0.1))
        await broker.connect()
        try:
            caplog.set_level(logging.WARNING, logger="broker.nats")
            own.stop()
            await asyncio.sleep(2.5)  # about 20 failed reconnect attempts
            own.restart()
            await eventually(broker.healthy, timeout=20)
        finally:
            await broker.close(timeout=5)
    errors = [r for r in caplog.records if r.getMessage().startswith("NATS connection error")]
    assert 1 <= len(errors) <= 3, [r.getMessage() for r in errors]

async def test_a_jetstream_subscription_made_while_the_server_restarts_waits_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The consumer request of a service starting while its server restarts times out (here
    after 1 s, the server is away for 3): it is asked again, not a failed start-up, and the
    subscription then receives what is published."""
    with nats_server() as own:
        own.start()
        broker = JetStreamBroker(
            nats_test_settings(own.url, reconnect_wait=0.2), publish_timeout=1.0
        )
        await broker.connect()
        got: list[bytes] = []

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            got.append(msg)

        try:
            caplog.set_level(logging.WARNING, logger="broker.jetstream")
            topic = unique("events.restart")
            own.stop()
            subscribing = asyncio.create_task(broker.subscribe(topic, handler, group="g"))
            await asyncio.sleep(3)
            assert not subscribing.done(), "the subscription gave up while the server was away"
            own.restart()
            await asyncio.wait_for(subscribing, 30)
            await broker.publish(topic, b"after the restart")
            await eventually(lambda: got == [b"after the restart"], timeout=10)
        finally:
            await broker.close(timeout=5)
    asked_again = [r for r in caplog.records if "asking again" in r.getMessage()]
    assert asked_again, [r.getMessage() for r in caplog.records]


async def test_a_jetstream_server_that_never_answers_fails_the_start_up_in_one_sentence() -> None:
    with nats_server() as own:
        own.start()
        broker = JetStreamBroker(
            nats_test_settings(own.url, setup_retry_for=1.5), publish_timeout=0.5
        )
        await broker.connect()
        try:
            own.stop()
            with pytest.raises(BrokerError, match=r"did not answer the request for the stream "
                               r"of .* within 1.5s .*setup_retry_for"):
                await broker.subscribe(unique("events.never"), lambda m, c: asyncio.sleep(0))
        finally:
            await broker.close(timeout=5)


async def test_wildcard_subjects(connect: Any) -> None:
    broker = await connect()
    root = unique("orders")
    one_token: list[str] = []
    any_depth: list[str] = []

    async def on_star(msg: bytes, ctx: MessageContext) -> None:
        one_token.append(ctx.topic)

    async def on_tail(msg: bytes, ctx: MessageContext) -> None:
        any_depth.append(ctx.topic)

    await broker.subscribe(f"{root}.*", on_star)
    await broker.subscribe(f"{root}.>", on_tail)
    for subject in (f"{root}.created", f"{root}.eu.paid", f"{root}.shipped"):
        await broker.publish(subject, b"x")
    await eventually(lambda: len(any_depth) == 3 and len(one_token) == 2)
    assert sorted(one_token) == [f"{root}.created", f"{root}.shipped"]
    assert sorted(any_depth) == sorted([f"{root}.created", f"{root}.eu.paid", f"{root}.shipped"])


async def test_queue_group_splits_and_plain_subscribers_get_all(connect: Any) -> None:
    topic, group = unique("jobs"), unique("workers")
    by_worker: Counter[str] = Counter()
    handled: Counter[int] = Counter()
    audit: list[int] = []

    def worker(name: str) -> Any:
        async def handle(msg: dict[str, int], ctx: MessageContext) -> None:
            by_worker[name] += 1
            handled[msg["n"]] += 1

        return handle

    async def audit_all(msg: dict[str, int], ctx: MessageContext) -> None:
        audit.append(msg["n"])

    first, second, publisher = await connect(), await connect(), await connect()
    await first.subscribe(topic, worker("first"), group=group)
    await second.subscribe(topic, worker("second"), group=group)
    await publisher.subscribe(topic, audit_all)  # no group: a plain subscriber sees everything
    for n in range(100):
        await publisher.publish(topic, {"n": n})
    await eventually(lambda: sum(handled.values()) == 100 and len(audit) == 100)
    assert set(handled) == set(range(100)) and set(handled.values()) == {1}
    assert by_worker["first"] > 0 and by_worker["second"] > 0


async def test_request_reply(connect: Any) -> None:
    responder, requester = await connect(), await connect()
    topic = f"{unique('rpc')}.add"

    async def add(msg: dict[str, int], ctx: MessageContext) -> dict[str, int]:
        assert ctx.headers["tenant"] == "acme"
        return {"sum": msg["a"] + msg["b"]}

    await responder.subscribe(topic, add, group="adders")
    # The responder's connection has flushed its SUB; a loaded server was once seen answering
    # "no responders" to the other connection right after, so allow it a moment to settle.
    for attempt in range(20):
        try:
            reply = await requester.request(
                topic, {"a": 2, "b": 3}, timeout=2, headers={"tenant": "acme"},
                response_type=dict,
            )
            break
        except BrokerError as exc:
            if "no subscriber answers" not in str(exc) or attempt == 19:
                raise
            await asyncio.sleep(0.1)
    assert reply == {"sum": 5}


async def test_request_without_responder_or_in_time_fails_clearly(connect: Any) -> None:
    broker = await connect()
    with pytest.raises(BrokerError, match="no subscriber answers"):
        await broker.request(f"{unique('nobody')}.home", b"?", timeout=1)

    async def slow(msg: bytes, ctx: MessageContext) -> bytes:
        await asyncio.sleep(1)
        return b"late"

    topic = f"{unique('slow')}.op"
    await broker.subscribe(topic, slow)
    with pytest.raises(RequestTimeout, match=r"within 0\.2s"):
        await broker.request(topic, b"?", timeout=0.2)


async def test_core_redelivery_is_in_process_with_the_same_message_id(connect: Any) -> None:
    broker = await connect()
    topic = unique("flaky")
    seen: list[tuple[str, int]] = []

    async def flaky(msg: bytes, ctx: MessageContext) -> None:
        seen.append((ctx.message_id, ctx.redelivery_count))
        if ctx.redelivery_count < 2:
            raise RuntimeError("not yet")

    await broker.subscribe(topic, flaky, group="g")
    await broker.publish(topic, b"x")
    await eventually(lambda: len(seen) == 3)
    assert [count for _, count in seen] == [0, 1, 2]
    assert len({message_id for message_id, _ in seen}) == 1


# -- JetStream -----------------------------------------------------------------------------
async def test_stream_is_created_from_settings(connect: Any) -> None:
    name = unique("NEW").upper().replace("-", "_")
    broker = await connect(
        jetstream=True,
        stream={"name": name, "subjects": [f"{name}.>"], "replicas": 1, "max_age": 3600},
    )
    info = await broker.js.stream_info(name)
    assert f"{name}.>" in info.config.subjects
    assert info.config.num_replicas == 1
    assert info.config.max_age == 3600
    assert info.config.allow_msg_schedules


async def test_existing_compatible_stream_is_left_alone(connect: Any) -> None:
    name = unique("KEEP").upper().replace("-", "_")
    first = await connect(jetstream=True, stream={"name": name, "subjects": [f"{name}.>"]})
    await first.publish(f"{name}.kept", b"still here")
    # a second service with a narrower view (and another retention) uses the stream as it is
    second = await connect(
        jetstream=True, stream={"name": name, "subjects": [f"{name}.>"], "max_age": 60}
    )
    info = await second.js.stream_info(name)
    assert info.state.messages == 1 and info.config.max_age in (None, 0)


async def test_incompatible_stream_fails_with_what_differs(connect: Any) -> None:
    name = unique("TAKEN").upper().replace("-", "_")
    await connect(jetstream=True, stream={"name": name, "subjects": [f"{name}.a"]})
    with pytest.raises(BrokerError, match=rf"{name} exists but it does not capture {name}\.b"):
        await connect(jetstream=True, stream={"name": name, "subjects": [f"{name}.b"]})


async def test_replicas_come_from_settings(connect: Any) -> None:
    name = unique("R3").upper().replace("-", "_")
    with pytest.raises(BrokerError, match="NATS_STREAM_REPLICAS"):
        await connect(
            jetstream=True, stream={"name": name, "subjects": [f"{name}.>"], "replicas": 3}
        )


async def test_publish_is_deduplicated_by_nats_msg_id(connect: Any) -> None:
    broker = await connect(jetstream=True)
    topic = unique("dedup")
    got: list[bytes] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        got.append(msg)

    await broker.subscribe(topic, handler, group="g")
    await broker.publish(topic, b"first", headers={"Nats-Msg-Id": "order-7"})
    await broker.publish(topic, b"again", headers={"Nats-Msg-Id": "order-7"})
    await broker.publish(topic, b"other", headers={"Nats-Msg-Id": "order-8"})
    await eventually(lambda: len(got) == 2)
    await asyncio.sleep(0.3)
    assert got == [b"first", b"other"]


async def test_one_message_id_within_the_duplicate_window_is_one_stream_message(
    connect: Any,
) -> None:
    """The generic MESSAGE_ID_HEADER is JetStream's Nats-Msg-Id: a retried publish inside
    the stream's duplicate window is acknowledged but stored once; after it, stored again."""
    name = unique("DEDUP").upper().replace("-", "_")
    broker = await connect(
        jetstream=True,
        stream={"name": name, "subjects": [f"{name}.>"], "duplicate_window": 1.5},
    )
    assert (await broker.js.stream_info(name)).config.duplicate_window == 1.5
    topic = f"{name}.reports"
    for attempt in range(3):  # a client's retries: each one answered OK
        await broker.publish(topic, f"try {attempt}".encode(), headers={MESSAGE_ID_HEADER: "r-1"})
    await broker.publish(topic, b"another report", headers={MESSAGE_ID_HEADER: "r-2"})
    assert (await broker.js.stream_info(name)).state.messages == 2
    await asyncio.sleep(2.0)  # past the window the id is new again
    await broker.publish(topic, b"late retry", headers={MESSAGE_ID_HEADER: "r-1"})
    assert (await broker.js.stream_info(name)).state.messages == 3


def test_resends_end_inside_the_duplicate_window() -> None:
    from brokerline.nats.settings import NatsSettings

    def retry_for(window: float) -> float:
        settings = NatsSettings.model_validate({"stream": {"duplicate_window": window}})
        return JetStreamBroker(settings)._retry_for

    assert retry_for(10) == 5  # half the window: a late resend is still a duplicate
    assert retry_for(0) == 15  # 0 is the server's 2 minutes, not "never resend"


async def test_a_stream_with_another_duplicate_window_is_used_with_a_warning(
    connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("WINDOW").upper().replace("-", "_")
    await connect(jetstream=True, stream={"name": name, "subjects": [f"{name}.>"]})
    caplog.set_level(logging.WARNING, logger="broker.jetstream")
    await connect(
        jetstream=True, stream={"name": name, "subjects": [f"{name}.>"], "duplicate_window": 30}
    )
    [line] = [r.getMessage() for r in caplog.records if "deduplicates" in r.getMessage()]
    assert "for 120s, not the configured broker.nats.stream.duplicate_window 30s" in line


async def test_nats_core_carries_the_message_id_as_the_subscribers_message_id(
    connect: Any,
) -> None:
    broker = await connect()
    topic = unique("ids")
    seen: list[MessageContext] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        seen.append(ctx)

    await broker.subscribe(topic, handler)
    await broker.publish(topic, b"x", headers={MESSAGE_ID_HEADER: "event-42"})
    await eventually(lambda: len(seen) == 1)
    assert seen[0].message_id == "event-42"
    assert MESSAGE_ID_HEADER not in seen[0].headers  # carried once, as Nats-Msg-Id


async def test_durable_group_resumes_where_it_left_off(connect: Any) -> None:
    topic, group = unique("durable"), unique("g")
    publisher = await connect(jetstream=True)
    got: list[int] = []

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        got.append(msg["n"])

    first = await connect(jetstream=True)
    subscription = await first.subscribe(topic, handler, group=group)
    await publisher.publish(topic, {"n": 1})
    await eventually(lambda: got == [1])
    await subscription.close(timeout=5)
    await publisher.publish(topic, {"n": 2})  # published while nobody listens
    second = await connect(jetstream=True)
    await second.subscribe(topic, handler, group=group)
    await eventually(lambda: got == [1, 2])


async def test_consumer_limits_follow_subscribe_options(connect: Any) -> None:
    from brokerline.core import SubscribeOptions
    from brokerline.jetstream.consumer import durable_name

    broker = await connect(jetstream=True)
    topic, group = unique("limits"), unique("g")

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        pass

    options = SubscribeOptions(max_deliveries=4, ack_wait=7, concurrency=3)
    await broker.subscribe(topic, handler, group=group, options=options)
    info = await broker.js.consumer_info("EVENTS", durable_name(group, topic))
    assert info.config.max_deliver == 5  # one more than max_deliveries: see the module doc
    assert info.config.ack_wait == 7
    assert info.config.max_ack_pending == 3 * 4 + 16


async def test_closing_mid_stream_gives_messages_back_without_burning_deliveries(
    connect: Any,
) -> None:
    """Messages that reach a closing consumer go back once, to the next one.

    They arrive on pull requests the closing consumer still has open; handing each back at
    once would bring it straight back to those requests until max_deliver drops it.
    """
    from brokerline.core import SubscribeOptions

    publisher = await connect(jetstream=True)
    topic, group = unique("handover"), unique("g")
    seen: dict[int, int] = {}  # n -> highest redelivery count seen

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        seen[msg["n"]] = max(seen.get(msg["n"], 0), ctx.redelivery_count)

    options = SubscribeOptions(ordered=False, concurrency=50)
    first = await (await connect(jetstream=True)).subscribe(topic, handler, group=group,
                                                             options=options)
    await publisher.publish_batch(topic, [{"n": n} for n in range(100)])
    await eventually(lambda: len(seen) == 100)  # caught up: its pull requests wait, open
    closing = asyncio.create_task(first.close(timeout=5))
    await asyncio.sleep(0.05)
    await publisher.publish_batch(topic, [{"n": n} for n in range(100, 200)])
    await closing
    await (await connect(jetstream=True)).subscribe(topic, handler, group=group,
                                                    options=options)
    await eventually(lambda: len(seen) == 200, timeout=20)
    assert max(seen.values()) <= 1, "a message was delivered more than twice"


async def test_non_shared_subscription_types_are_refused(connect: Any) -> None:
    from brokerline.core import SubscribeOptions, SubscriptionType

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        pass

    options = SubscribeOptions(subscription_type=SubscriptionType.EXCLUSIVE)
    for broker in (await connect(), await connect(jetstream=True)):
        with pytest.raises(BrokerError, match="has no exclusive subscriptions"):
            await broker.subscribe(unique("solo"), handler, group="g", options=options)
