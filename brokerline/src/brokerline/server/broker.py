"""The broker server: registers subscriber handlers and runs them with the app."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from brokerline.config.sections import ConfigError
from brokerline.core import (
    BatchHandler,
    BatchOptions,
    Broker,
    Handler,
    SubscribeOptions,
    Subscription,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    topic: str
    handler: Handler | BatchHandler
    group: str | None = None
    options: SubscribeOptions = field(default_factory=SubscribeOptions)
    batch: BatchOptions | None = None  # a batch handler's (see `register_batch`)


class BrokerServer:
    """Subscribes every registered handler on start; drains them on stop.

    `overrides` (from `broker.subscriptions`, see `factory.subscription_overrides`): per topic,
    `SubscribeOptions` fields set over whatever options its registration passed.
    """

    name = "broker"

    def __init__(
        self,
        broker: Broker,
        default_options: SubscribeOptions | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.broker = broker
        self.default_options = default_options or SubscribeOptions()
        self.overrides = dict(overrides or {})
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
        chosen = dataclasses.replace(
            options or self.default_options, **self.overrides.get(topic, {})
        )
        self.registrations.append(Registration(topic, handler, group, chosen))

    def register_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
        batch: BatchOptions | None = None,
    ) -> None:
        """Add a batch subscriber (`Broker.subscribe_batch`): `handler(batch: list[T], ctx)`."""
        chosen = dataclasses.replace(
            options or self.default_options, **self.overrides.get(topic, {})
        )
        self.registrations.append(
            Registration(topic, handler, group, chosen, batch or BatchOptions())
        )

    async def start(self) -> None:
        self._check_overrides()
        for reg in self.registrations:
            handler: Any = reg.handler  # a Handler, or a BatchHandler when reg.batch is set
            if reg.batch is None:
                sub = await self.broker.subscribe(
                    reg.topic, handler, group=reg.group, options=reg.options
                )
            else:
                sub = await self.broker.subscribe_batch(
                    reg.topic, handler, group=reg.group, options=reg.options, batch=reg.batch
                )
            self._subscriptions.append(sub)
            log.info("subscribed %s to %s (group %s)", _name(reg.handler), reg.topic, reg.group)

    async def stop(self, timeout: float) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(s.close(timeout) for s in subscriptions))


    def _check_overrides(self) -> None:
        """An override of a topic nobody subscribes to is a misspelling: say so."""
        registered = {reg.topic for reg in self.registrations}
        unknown = sorted(set(self.overrides) - registered)
        if unknown:
            raise ConfigError(
                f"broker.subscriptions names {', '.join(map(repr, unknown))}, which no "
                f"subscriber registers (the subscribed topics: {', '.join(sorted(registered))}"
                "); use one of those topic names"
            )


def _name(handler: Handler | BatchHandler) -> str:
    return getattr(handler, "__qualname__", repr(handler))
