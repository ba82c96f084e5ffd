"""The commit rule without a broker: only past a contiguous run of settled records."""

from __future__ import annotations

from brokerline.kafka.offsets import PartitionProgress, message_id, position


def test_the_committable_offset_stops_at_the_first_unsettled_record() -> None:
    progress = PartitionProgress()
    assert progress.committable() is None
    for offset in (5, 6, 7, 9):  # 8 is a gap (a transaction marker, a compacted record)
        progress.received(offset)
    progress.settled(6)
    progress.settled(7)
    assert progress.committable() == 5  # 5 is still unsettled: nothing after it may pass
    progress.settled(5)
    assert progress.committable() == 9
    progress.committed = 9
    assert progress.committable() is None  # nothing new since the last commit
    progress.settled(9)
    assert progress.committable() == 10


def test_a_record_given_up_unsettled_holds_the_commit() -> None:
    progress = PartitionProgress()
    progress.received(0)
    progress.received(1)
    progress.started(0)
    progress.abandoned(0)  # closing: the handler stopped without an outcome
    progress.settled(1)
    assert progress.committable() == 0 and progress.in_hand == 1


def test_message_ids_name_topic_partition_and_offset() -> None:
    assert position(message_id("orders.v1", 2, 41)) == ("orders.v1", 2, 41)
