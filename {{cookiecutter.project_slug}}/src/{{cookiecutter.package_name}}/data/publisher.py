"""The publisher of report events (biz.ReportEvents): the report service's way onto the broker."""

from __future__ import annotations

import asyncio
import logging

from brokerline.core import MESSAGE_ID_HEADER, Broker, BrokerError
from brokerline.core.repeats import RepeatedLog
from google.protobuf.message import Message

from ..api.events.v1.events_pb2 import RealTimeWarehousingData, UserReportData
from ..biz.report import PublishUnavailable, Report, ReportStatus
from ..conf import TopicsConfig

log = logging.getLogger(__name__)


class EventPublisher:
    """Publishes report events, keyed by user id so one user's events stay in order."""

    def __init__(self, broker: Broker, topics: TopicsConfig) -> None:
        self.broker = broker
        self.topics = topics
        # a broker outage refuses every report: one line per 10 s with a count, not one each
        self._refusals = RepeatedLog(log, logging.WARNING)

    def channels(self) -> dict[str, type[Message]]:
        """The topics this publisher sends to, with each one's message type (for AsyncAPI)."""
        return {
            self.topics.report: RealTimeWarehousingData,
            self.topics.user_report: UserReportData,
        }

    async def publish(self, report: Report, status: ReportStatus) -> None:
        """Publish both events of one report; returns once the broker accepted both.

        Each carries a message id made from the event id (the broker's dedupe key: JetStream's
        Nats-Msg-Id), so a retried report is stored once on the stream; the two differ, as
        the dedupe is per stream and one stream may hold both topics.
        """
        event = RealTimeWarehousingData(
            event_id=report.event_id, user_id=report.user_id, event_name=report.event_name,
            report_data=report.report_data, create_time_ms=report.create_time_ms,
        )
        accepted = UserReportData(
            event_id=status.event_id, user_id=status.user_id, status=status.status,
            create_time_ms=status.create_time_ms,
        )
        report_id = {MESSAGE_ID_HEADER: report.event_id}
        status_id = {MESSAGE_ID_HEADER: f"{status.event_id}:{status.status}"}
        try:
            await asyncio.gather(
                self.broker.publish(self.topics.report, event, key=report.user_id,
                                    headers=report_id),
                self.broker.publish(self.topics.user_report, accepted, key=status.user_id,
                                    headers=status_id),
            )
        except BrokerError as exc:
            self._refusals.log(type(exc).__name__, "could not publish report %s: %s",
                               report.event_id, exc)
            raise PublishUnavailable(f"the broker did not accept report {report.event_id}") from exc
