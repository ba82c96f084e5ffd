"""Which offset of a partition may be committed: the end of its contiguous settled prefix.

Kafka commits one offset per partition, meaning "every record before it is done". Records of
one partition are handled concurrently (different keys) and settle out of order, so the
committable offset is the lowest offset still unsettled, or one past the highest received
when none is. A record that was fetched but never handled (its partition was revoked, the
subscription closed) stays unsettled, so no commit ever passes it: the next owner of the
partition gets it again. This is the whole at-least-once rule; it holds no client objects.
"""

from __future__ import annotations

import asyncio


def message_id(topic: str, partition: int, offset: int) -> str:
    """A Kafka record's `MessageContext.message_id`: `topic/partition/offset`."""
    return f"{topic}/{partition}/{offset}"


def position(message_id: str) -> tuple[str, int, int]:
    """(topic, partition, offset) of a Kafka `message_id` (topic names have no '/')."""
    topic, partition, offset = message_id.rsplit("/", 2)
    return topic, int(partition), int(offset)


class PartitionProgress:
    """The offsets of one partition's records in hand, for one assignment of it.

    A new assignment gets a new object: records fetched under an older one are recognised
    (`is not` the current progress) and dropped unhandled.
    """

    def __init__(self) -> None:
        self._unsettled: set[int] = set()  # received, not yet settled (queued or handling)
        self._started: set[int] = set()  # of those, the ones a handler is working on
        self._end: int | None = None  # one past the highest offset received
        self.committed: int | None = None  # the last offset committed for this assignment
        self.revoked = False  # handle nothing more of it; finish what started
        self._idle = asyncio.Event()  # set while no handler is working on a record of it
        self._idle.set()

    def received(self, offset: int) -> None:
        self._unsettled.add(offset)
        if self._end is None or offset >= self._end:
            self._end = offset + 1

    def started(self, offset: int) -> None:
        self._started.add(offset)
        self._idle.clear()

    def settled(self, offset: int) -> None:
        """The record's outcome is final (acked, or dead-lettered): a commit may pass it."""
        self._unsettled.discard(offset)
        self.abandoned(offset)

    def abandoned(self, offset: int) -> None:
        """The handler stopped without an outcome (closing, revoked): it stays unsettled."""
        self._started.discard(offset)
        if not self._started:
            self._idle.set()

    @property
    def in_hand(self) -> int:
        return len(self._unsettled)

    def committable(self) -> int | None:
        """The offset to commit now (the next record to read), or None if nothing new."""
        if self._end is None:
            return None
        offset = min(self._unsettled) if self._unsettled else self._end
        if self.committed is not None and offset <= self.committed:
            return None
        return offset

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no handler works on a record of this partition; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
