"""The broker server: registers subscriber handlers and runs them with the app."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from brokerline.core import Broker, Handler, SubscribeOptions, Subscription

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    topic: str
    handler: Handler
    group: str | None = None
    options: SubscribeOptions = field(default_factory=SubscribeOptions)


class BrokerServer:
    """Subscribes every registered handler on start; drains them on stop."""

    name = "broker"

    def __init__(self, broker: Broker, default_options: SubscribeOptions | None = None) -> None:
        self.broker = broker
        self.default_options = default_options or SubscribeOptions()
        self.registrations: list[Registration] = []
        self._subscriptions: list[Subscription] = []

    def register(
        self,
        topic: str,
        handler: Handler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
    ) -> None:
        """Add a subscriber; call before start (its type annotation picks the decoding)."""
        self.registrations.append(
            Registration(topic, handler, group, options or self.default_options)
        )

    async def start(self) -> None:
        for reg in self.registrations:
            sub = await self.broker.subscribe(
                reg.topic, reg.handler, group=reg.group, options=reg.options
            )
            self._subscriptions.append(sub)
            log.info("subscribed %s to %s (group %s)", _name(reg.handler), reg.topic, reg.group)

    async def stop(self, timeout: float) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(s.close(timeout) for s in subscriptions))


def _name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", repr(handler))
