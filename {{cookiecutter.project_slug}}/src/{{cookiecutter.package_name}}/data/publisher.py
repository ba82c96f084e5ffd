"""The data-layer publisher: the report service's only way onto the broker."""

from __future__ import annotations

import asyncio

from google.protobuf.message import Message

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..conf import TopicsConfig
from brokerline.core import Broker


class EventPublisher:
    """Publishes report events, keyed by user id so one user's events stay in order."""

    def __init__(self, broker: Broker, topics: TopicsConfig) -> None:
        self.broker = broker
        self.topics = topics

    def channels(self) -> dict[str, type[Message]]:
        """The topics this publisher sends to, with each one's message type (for AsyncAPI)."""
        return {
            self.topics.report: RealTimeWarehousingData,
            self.topics.user_report: UserReportData,
        }

    async def publish_report(self, report: RealTimeWarehousingData, status: UserReportData) -> None:
        """Publish both events of one report; returns once the broker accepted both."""
        await asyncio.gather(
            self.broker.publish(self.topics.report, report, key=report.user_id),
            self.broker.publish(self.topics.user_report, status, key=status.user_id),
        )
