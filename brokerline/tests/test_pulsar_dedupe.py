"""Broker-side deduplication on Apache Pulsar: `producer_name` + `publish(sequence_id=)`.

With deduplication on for the namespace, the broker stores a message only if its sequence id
is above the highest it has stored from that producer name on that topic. Apache Pulsar only
(pulsar-lite 0.2.0 has no admin API to turn deduplication on): parametrized over
`apache-pulsar` alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from brokerline.core import BrokerError, MessageContext
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.settings import PulsarSettings
from brokerline.testing.apache_pulsar import ApachePulsarServer, admin, topic_path
from brokerline.testing.brokers import APACHE_PULSAR, connected_brokers, eventually, unique

Factory = Callable[..., Awaitable[PulsarBroker]]
#: how long a test waits to see that no extra message arrives
QUIET = 1.0


@pytest.fixture(params=[APACHE_PULSAR])
def server(request: pytest.FixtureRequest) -> ApachePulsarServer:
    """The session's Apache Pulsar (the test id says `apache-pulsar`)."""
    return request.getfixturevalue("apache_pulsar_server")  # type: ignore[no-any-return]


@pytest.fixture
def deduplicated_namespace(server: ApachePulsarServer) -> str:
    """A namespace of its own with deduplication on (topics created later inherit it)."""
    namespace = f"public/{unique('dedupe')}"
    admin(server, "PUT", f"namespaces/{namespace}")
    admin(server, "POST", f"namespaces/{namespace}/deduplication", True)
    assert admin(server, "GET", f"namespaces/{namespace}/deduplication") is True
    return namespace


@pytest_asyncio.fixture
async def factory(server: ApachePulsarServer) -> AsyncIterator[Factory]:
    def make(**overrides: Any) -> PulsarBroker:
        # a new namespace's first lookup waits for the broker to take its bundle
        fields: dict[str, Any] = {"service_urls": [server.url], "operation_timeout": 15}
        fields.update(overrides)
        return PulsarBroker(PulsarSettings.model_validate(fields))

    async with connected_brokers(make) as connect:
        yield connect


async def read_all(
    factory: Factory, topic: str, at_least: int
) -> list[tuple[dict[str, int], MessageContext]]:
    """Every message stored on `topic`, from the earliest: `at_least`, then until none more
    arrive for a while."""
    seen: list[tuple[dict[str, int], MessageContext]] = []

    async def handler(msg: dict[str, int], ctx: MessageContext) -> None:
        seen.append((msg, ctx))

    consumer = await factory()
    subscription = await consumer.subscribe(topic, handler, group=unique("reader"))
    await eventually(lambda: len(seen) >= at_least)
    count = -1
    while count != len(seen):  # until a quiet spell
        count = len(seen)
        await asyncio.sleep(QUIET)
    await subscription.close(timeout=5)
    return seen


BACKLOG = "backlog"


def with_backlog(server: ApachePulsarServer, topic: str) -> str:
    """Create `topic` with a subscription that counts what the broker stores (its backlog)."""
    admin(server, "PUT", f"{topic_path(topic)}/subscription/{BACKLOG}")
    return topic


def stored(server: ApachePulsarServer, topic: str) -> int:
    """Messages the broker stored (received ones include dropped duplicates: `received`)."""
    stats = admin(server, "GET", f"{topic_path(topic)}/stats")
    return int(stats["subscriptions"][BACKLOG]["msgBacklog"])


def received(server: ApachePulsarServer, topic: str) -> int:
    return int(admin(server, "GET", f"{topic_path(topic)}/stats")["msgInCounter"])


async def test_a_resent_sequence_id_is_stored_once_even_after_a_restart(
    server: ApachePulsarServer, factory: Factory, deduplicated_namespace: str
) -> None:
    topic = with_backlog(server, f"persistent://{deduplicated_namespace}/{unique('reports')}")
    name = unique("report-service-0")
    first = await factory(producer_name=name)
    for sequence_id in (1, 2, 3):
        await first.publish(topic, {"n": sequence_id}, sequence_id=sequence_id)
    await first.publish(topic, {"n": 2}, sequence_id=2)  # a retry: acknowledged, not stored
    await first.publish(topic, {"n": 3}, sequence_id=3)
    await first.close(timeout=5)  # the process restarts and resends what it is unsure of
    again = await factory(producer_name=name)
    await again.publish(topic, {"n": 3}, sequence_id=3)
    await again.publish(topic, {"n": 4}, sequence_id=4)
    await again.publish(topic, {"n": 1}, sequence_id=1)  # older than the highest: dropped
    seen = await read_all(factory, topic, at_least=4)
    assert [msg["n"] for msg, _ctx in seen] == [1, 2, 3, 4]
    assert stored(server, topic) == 4
    assert received(server, topic) == 8  # the broker acknowledged the duplicates, unstored
    assert admin(server, "GET", f"{topic_path(topic)}/stats")["deduplicationStatus"] == "Enabled"


async def test_without_sequence_ids_the_client_continues_after_the_broker_s_last_one(
    server: ApachePulsarServer, factory: Factory, deduplicated_namespace: str
) -> None:
    """A restarted producer of the same name is not silenced: the client asks the broker for
    the name's last sequence id and numbers its new messages after it."""
    topic = with_backlog(server, f"persistent://{deduplicated_namespace}/{unique('events')}")
    name = unique("publisher")
    first = await factory(producer_name=name)
    for n in range(3):
        await first.publish(topic, {"n": n})
    await first.close(timeout=5)
    again = await factory(producer_name=name)
    for n in range(3, 5):
        await again.publish(topic, {"n": n})
    seen = await read_all(factory, topic, at_least=5)
    assert [msg["n"] for msg, _ctx in seen] == list(range(5))
    assert stored(server, topic) == 5


async def test_without_deduplication_the_same_sequence_id_is_stored_twice(
    server: ApachePulsarServer, factory: Factory
) -> None:
    """The control: the drop above is the broker's deduplication, nothing of the plugin's."""
    topic = with_backlog(server, f"persistent://public/default/{unique('not-deduplicated')}")
    publisher = await factory(producer_name=unique("report-service-0"))
    await publisher.publish(topic, {"n": 1}, sequence_id=1)
    await publisher.publish(topic, {"n": 1}, sequence_id=1)
    await eventually(lambda: stored(server, topic) == 2)


async def test_a_producer_name_taken_by_a_running_process_is_refused_clearly(
    server: ApachePulsarServer, factory: Factory
) -> None:
    topic, name = unique("taken"), unique("report-service-0")
    running = await factory(producer_name=name)
    await running.publish(topic, {"n": 1}, sequence_id=1)
    second = await factory(producer_name=name)
    with pytest.raises(BrokerError, match="give every running process its own"):
        await second.publish(topic, {"n": 1}, sequence_id=1)


async def test_a_sequence_id_needs_a_producer_name() -> None:
    broker = PulsarBroker(PulsarSettings(service_urls=["pulsar://127.0.0.1:6650"]))
    with pytest.raises(BrokerError, match=r"needs broker\.pulsar\.producer_name"):
        await broker.publish("reports", {"n": 1}, sequence_id=1)


async def test_a_named_producer_refuses_to_mix_caller_and_client_sequence_ids(
    server: ApachePulsarServer, factory: Factory, deduplicated_namespace: str
) -> None:
    """The client would number the message without an id after its own counter, not after
    the caller's 100: the broker would drop it as a duplicate, so the plugin refuses it."""
    topic = with_backlog(server, f"persistent://{deduplicated_namespace}/{unique('mixed')}")
    publisher = await factory(producer_name=unique("report-service-0"))
    await publisher.publish(topic, {"n": 1}, sequence_id=100)
    with pytest.raises(BrokerError, match="mixes messages with and without sequence_id"):
        await publisher.publish(topic, {"n": 2})
    with pytest.raises(BrokerError, match="mixes messages with and without sequence_id"):
        await publisher.publish_batch(topic, [{"n": 3}])
    await publisher.publish(topic, {"n": 4}, sequence_id=101)
    await eventually(lambda: stored(server, topic) == 2)


async def test_a_sequence_id_must_fit_the_message_field() -> None:
    settings = PulsarSettings(service_urls=["pulsar://127.0.0.1:6650"], producer_name="a")
    named = PulsarBroker(settings)
    for out_of_range in (-1, 1 << 63):
        with pytest.raises(BrokerError, match=r"between 0 and 2\*\*63 - 1"):
            await named.publish("reports", {"n": 1}, sequence_id=out_of_range)


async def test_a_keyed_resend_on_a_partitioned_topic_is_stored_once(
    server: ApachePulsarServer, factory: Factory, deduplicated_namespace: str
) -> None:
    """Each partition deduplicates by itself; a key sends the resend to the same partition."""
    topic = f"persistent://{deduplicated_namespace}/{unique('partitioned')}"
    admin(server, "PUT", f"{topic_path(topic)}/partitions", 4)
    name = unique("report-service-0")
    first = await factory(producer_name=name)
    for sequence_id in range(1, 9):
        await first.publish(topic, {"n": sequence_id}, key=f"k{sequence_id}",
                            sequence_id=sequence_id)
    await first.close(timeout=5)
    again = await factory(producer_name=name)
    for sequence_id in range(1, 9):  # all resent after a restart, each to its key's partition
        await again.publish(topic, {"n": sequence_id}, key=f"k{sequence_id}",
                            sequence_id=sequence_id)
    seen = await read_all(factory, topic, at_least=8)
    assert sorted(msg["n"] for msg, _ctx in seen) == list(range(1, 9))
    assert len({ctx.message_id.split(",")[2] for _msg, ctx in seen}) > 1  # several partitions
