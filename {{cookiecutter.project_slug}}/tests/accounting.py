"""What became of each accepted report: stored once, lost, stored twice, dead-lettered.

Rows are counted per report *content*, not per `event_id`: the unique index on `event_id`
makes a per-id duplicate count zero whatever the saver does, so it proves nothing. Every
report `post_reports` sends has a content of its own, so two rows with one content are one
report stored twice, whichever ids they carry. `tests/test_accounting.py` shows that this
check fails when idempotency is switched off.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from brokerline.config import DatabaseConfig
from brokerline.core import Broker, MessageContext
from brokerline.core.registry import plugin_factory
from brokerline.sql.database import create_engine
from brokerline.testing.brokers import nats_test_settings, unique
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from {{ cookiecutter.package_name }}.data.models import AcceptStatus, RealtimeWarehousing

from .processes import Pair


@dataclass(frozen=True)
class StoreAudit:
    """Accepted reports against the rows stored for them."""

    accepted: int
    lost: list[str]  # contents answered OK without a row
    stored_twice: dict[str, int]  # content -> rows, where more than one
    lost_statuses: list[str]  # event ids answered OK without an accept-status row

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} of {self.accepted} accepted reports were lost "
                         f"(e.g. {self.lost[:3]})")
        if self.stored_twice:
            found.append(f"{len(self.stored_twice)} reports were stored more than once "
                         f"(e.g. {dict(list(self.stored_twice.items())[:3])})")
        if self.lost_statuses:
            found.append(f"{len(self.lost_statuses)} accept statuses were lost")
        return found

    def assert_exactly_once(self) -> None:
        problems = self.problems()
        assert not problems, "; ".join(problems)


async def rows_per_content(db_url: str) -> Counter[str]:
    """How many report rows hold each content (empty while the table does not exist)."""
    engine = create_engine(DatabaseConfig(url=db_url))
    content = RealtimeWarehousing.report_data
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(content, func.count()).group_by(content))
            return Counter({str(c): int(n) for c, n in rows})
    except SQLAlchemyError:  # the saver has not created the table yet
        return Counter()
    finally:
        await engine.dispose()


async def stored_status_ids(db_url: str) -> set[str]:
    engine = create_engine(DatabaseConfig(url=db_url))
    try:
        async with engine.connect() as conn:
            return set((await conn.scalars(select(AcceptStatus.event_id))).all())
    except SQLAlchemyError:
        return set()
    finally:
        await engine.dispose()


async def audit_reports(db_url: str, accepted: dict[str, str]) -> StoreAudit:
    """Audit the rows against `accepted` (event id -> content, as `PostResult.contents`)."""
    rows = await rows_per_content(db_url)
    statuses = await stored_status_ids(db_url)
    return StoreAudit(
        accepted=len(accepted),
        lost=sorted(c for c in accepted.values() if rows[c] == 0),
        stored_twice={c: n for c, n in rows.items() if n > 1},
        lost_statuses=sorted(set(accepted) - statuses),
    )


async def wait_for_contents(db_url: str, contents: Iterable[str], timeout: float) -> int:
    """Wait until every content in `contents` has a row (or the timeout); the number stored."""
    wanted = set(contents)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stored = len(wanted & set(await rows_per_content(db_url)))
        if stored == len(wanted) or loop.time() > deadline:
            return stored
        await asyncio.sleep(0.5)


def dead_letter_topic(topic: str, group: str) -> str:
    """Where the saver's group dead-letters `topic` (Pulsar's `<topic>-<subscription>-DLQ`)."""
    return f"{topic}-{group}-DLQ"


def _client(pair: Pair) -> Broker:
    if pair.broker_type != "jetstream":
        return pair.client()  # on Apache Pulsar, in the pair's namespace
    # the app's own stream settings: the services may have created the stream already, and
    # the test default (which also captures one-token subjects) would not match it
    return plugin_factory("jetstream")(settings=nats_test_settings(pair.broker.url, stream={}))


@asynccontextmanager
async def dead_letters(
    pair: Pair, topics: Iterable[str], group: str = "saver"
) -> AsyncIterator[list[MessageContext]]:
    """Collect whatever the pair's `group` dead-letters from `topics` while the block runs."""
    client = _client(pair)
    await client.connect()
    arrived: list[MessageContext] = []

    async def on_dead(msg: bytes, ctx: MessageContext) -> None:
        arrived.append(ctx)

    try:
        for topic in topics:
            await client.subscribe(dead_letter_topic(topic, group), on_dead, group=unique("dlq"))
        yield arrived
    finally:
        await client.close(timeout=5)
